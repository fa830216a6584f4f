"""Max, average and global-average pooling: finite differences, fast path == reference,
PyTorch equality, tie rule, determinism and bad input."""
import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

import layers
import nn
from layers.pool import output_size, window_taps

POOLS = {(2, "max"): layers.MaxPool2D, (2, "avg"): layers.AvgPool2D,
         (1, "max"): layers.MaxPool1D, (1, "avg"): layers.AvgPool1D}


@st.composite
def pool_configs(draw):
    """A random pool that fits its input: kernel 1-4, stride None or 1-3, padding up to
    half the kernel, odd sizes, ``ceil_mode`` (with inputs down to one element, smaller than
    the kernel, which a stride > 1 then allows), for max pooling ``dilation`` 1-3 (every
    window reading some input) and for average pooling ``count_include_pad`` and in 2-D (as
    PyTorch) ``divisor_override``."""
    dims, kind = draw(st.sampled_from([1, 2])), draw(st.sampled_from(["max", "avg"]))
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(dims))
    stride = draw(st.none() | st.tuples(*[st.integers(1, 3)] * dims))
    padding = tuple(draw(st.integers(0, k // 2)) for k in kernel)
    options = {"ceil_mode": draw(st.booleans())}
    dilation = (1,) * dims
    if kind == "avg":
        options["count_include_pad"] = draw(st.booleans())
        if dims == 2:
            options["divisor_override"] = draw(st.none() | st.integers(1, 7))
    else:
        dilation = tuple(draw(st.integers(1, 3)) for _ in range(dims))
        options["dilation"] = dilation if dims == 2 else dilation[0]
    smallest = 1 if options["ceil_mode"] and stride and min(stride) > 1 else None
    sizes = tuple((smallest or max(1, d * (k - 1) + 1 - 2 * p)) + draw(st.integers(0, 6))
                  for k, p, d in zip(kernel, padding, dilation))
    for size, k, s, p, d in zip(sizes, kernel, stride or kernel, padding, dilation):
        out = output_size(size, k, s, p, options["ceil_mode"], d)
        assume(out >= 1 and all(range(size)[window_taps(o, s, p, k, size, d)] for o in range(out)))
    return dict(cls=POOLS[dims, kind], kernel=kernel if dims == 2 else kernel[0],
                stride=stride, padding=padding if dims == 2 else padding[0], options=options,
                shape=(draw(st.integers(1, 3)), draw(st.integers(1, 3))) + sizes)


def make_pool(cfg, dtype=np.float64, seed=0):
    layer = cfg["cls"](cfg["kernel"], stride=cfg["stride"], padding=cfg["padding"],
                       **cfg.get("options", {}))
    return layer, np.random.default_rng(seed).standard_normal(cfg["shape"]).astype(dtype)


def run(layer, x, dy=None, reference=False):
    with nn.use_reference(reference):
        y = layer(x)
    if dy is None:
        dy = np.random.default_rng(7).standard_normal(y.shape).astype(y.dtype)
    return [y, layer.backward(dy)], dy


def assert_close(actual, expected, rtol):
    for a, b in zip(actual, expected):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * max(1.0, np.abs(b).max()))


@pytest.mark.parametrize("cfg", [
    dict(cls=layers.MaxPool2D, kernel=(3, 2), stride=(2, 1), padding=(1, 1), shape=(2, 3, 7, 6)),
    dict(cls=layers.AvgPool2D, kernel=3, stride=2, padding=1, shape=(2, 2, 7, 8)),
    dict(cls=layers.MaxPool1D, kernel=3, stride=1, padding=1, shape=(2, 3, 9)),
    dict(cls=layers.AvgPool1D, kernel=4, stride=None, padding=2, shape=(2, 2, 10)),
    dict(cls=layers.MaxPool2D, kernel=3, stride=2, padding=1, shape=(2, 2, 6, 8),
         options=dict(ceil_mode=True)),
    dict(cls=layers.AvgPool2D, kernel=(3, 2), stride=2, padding=1, shape=(2, 2, 6, 7),
         options=dict(ceil_mode=True, count_include_pad=False)),
    dict(cls=layers.MaxPool2D, kernel=(2, 3), stride=(1, 2), padding=(1, 0), shape=(2, 2, 7, 9),
         options=dict(dilation=(3, 2))),
    dict(cls=layers.MaxPool1D, kernel=3, stride=2, padding=1, shape=(2, 2, 10),
         options=dict(dilation=2, ceil_mode=True)),
    dict(cls=layers.AvgPool1D, kernel=3, stride=2, padding=1, shape=(2, 2, 8),
         options=dict(divisor_override=2)),
])
def test_gradcheck(cfg):
    layer, x = make_pool(cfg)
    report = nn.gradcheck(layer, x)                 # random x: no ties within eps
    assert report.passed, report


def test_global_avg_pool():
    x = np.random.default_rng(0).standard_normal((3, 4, 5, 6))
    layer = layers.GlobalAvgPool2D()
    assert nn.gradcheck(layer, x).passed
    np.testing.assert_allclose(layer(x), x.mean(axis=(2, 3)))
    assert layer.flops((3, 4, 5, 6), (3, 4)) == 360


@settings(max_examples=40, deadline=None)
@given(pool_configs(), st.sampled_from([np.float32, np.float64]))
def test_fast_equals_reference(cfg, dtype):
    layer, x = make_pool(cfg, dtype)
    fast, dy = run(layer, x)
    reference, _ = run(layer, x, dy, reference=True)
    assert_close(fast, reference, 1e-5 if dtype == np.float32 else 1e-10)


@settings(max_examples=40, deadline=None)
@given(pool_configs(), st.booleans())
def test_matches_torch(cfg, ties):
    torch = pytest.importorskip("torch")
    layer, x = make_pool(cfg)
    if ties:                                        # many equal values: the tie rule decides
        x = np.round(x)
    name = type(layer).__name__.replace("D", "d")
    twin = getattr(torch.nn, name)(cfg["kernel"], stride=cfg["stride"], padding=cfg["padding"],
                                   **cfg["options"])
    ours, dy = run(layer, x)
    xt = torch.from_numpy(x).requires_grad_(True)
    yt = twin(xt)
    yt.backward(torch.from_numpy(dy))
    assert_close(ours, [yt.detach().numpy(), xt.grad.numpy()], 1e-12)


def test_ties_go_to_the_first_maximum():
    x = np.array([[[[1.0, 3.0, 3.0, 0.0],
                    [3.0, 2.0, 0.0, 0.0]]]])
    for reference in (False, True):
        [y, dx], _ = run(layers.MaxPool2D(2), x, np.ones((1, 1, 1, 2)), reference)
        np.testing.assert_array_equal(y, [[[[3.0, 3.0]]]])
        np.testing.assert_array_equal(dx, [[[[0, 1, 1, 0], [0, 0, 0, 0]]]])


def test_padding_never_wins_and_counts_in_the_average():
    x = -np.ones((1, 1, 3, 3))
    for reference in (False, True):
        [y, dx], _ = run(layers.MaxPool2D(2, stride=2, padding=1), x, np.ones((1, 1, 2, 2)), reference)
        np.testing.assert_array_equal(y, -np.ones((1, 1, 2, 2)))
        assert dx.sum() == 4
        [y, _], _ = run(layers.AvgPool2D(2, stride=2, padding=1), x, None, reference)
        np.testing.assert_array_equal(y, [[[[-0.25, -0.5], [-0.5, -1.0]]]])


@pytest.mark.parametrize("reference", [False, True])
def test_ceil_mode_and_the_divisor(reference):
    """Windows of 3, stride 2, padding 1 over [1, 2, 3, 4]: rounding up adds a third window
    ``[4, pad]``; the first window overlaps the left padding. Averages divide by the positions
    covered in the padded input (3, 3, 2), or in the input alone (2, 3, 1), or by the
    override. Windows of 2 taps 2 apart, stride 1, padding 1, read (pad, 2), (1, 3), (2, 4),
    (3, pad)."""
    x = np.array([[[1.0, 2.0, 3.0, 4.0]]])
    cases = [(layers.MaxPool1D(3, 2, 1, ceil_mode=True), [2, 4, 4], [0, 1, 0, 2]),
             (layers.AvgPool1D(3, 2, 1, ceil_mode=True), [1, 3, 2], [1 / 3, 2 / 3, 1 / 3, 5 / 6]),
             (layers.AvgPool1D(3, 2, 1, ceil_mode=True, count_include_pad=False), [1.5, 3, 4],
              [1 / 2, 1 / 2 + 1 / 3, 1 / 3, 4 / 3]),
             (layers.AvgPool1D(3, 2, 1), [1, 3], [1 / 3, 2 / 3, 1 / 3, 1 / 3]),
             (layers.AvgPool1D(3, 2, 1, ceil_mode=True, divisor_override=2), [1.5, 4.5, 2],
              [1 / 2, 1, 1 / 2, 1]),
             (layers.MaxPool1D(2, 1, 1, 2), [2, 3, 4, 3], [0, 1, 2, 1])]
    for layer, y, dx in cases:
        [ours, dours], _ = run(layer, x, np.ones((1, 1, len(y))), reference)
        np.testing.assert_allclose(ours[0, 0], y, rtol=1e-15)
        np.testing.assert_allclose(dours[0, 0], dx, rtol=1e-15)


def test_same_bits_twice():
    x = np.random.default_rng(1).standard_normal((8, 16, 15, 14)).astype(np.float32)
    for cls in (layers.MaxPool2D, layers.AvgPool2D):
        first, dy = run(cls(3, stride=2, padding=1), x)
        second, _ = run(cls(3, stride=2, padding=1), x, dy)
        for a, b in zip(first, second):
            np.testing.assert_array_equal(a, b)


def test_flops_and_repr():
    pool = layers.MaxPool2D(2)
    assert pool.flops((64, 32, 28, 28), (64, 32, 14, 14)) == 64 * 32 * 196 * 4
    assert repr(pool) == "MaxPool2D(kernel_size=(2, 2), stride=(2, 2), padding=(0, 0))"
    assert repr(layers.AvgPool1D(3, stride=2)) == "AvgPool1D(kernel_size=3, stride=2, padding=0)"
    assert (repr(layers.AvgPool2D(2, ceil_mode=True, count_include_pad=False))
            == "AvgPool2D(kernel_size=(2, 2), stride=(2, 2), padding=(0, 0), ceil_mode=True, "
               "count_include_pad=False)")
    assert repr(layers.MaxPool1D(3, 1, 1, 2)) == "MaxPool1D(kernel_size=3, stride=1, padding=1, dilation=2)"
    assert (repr(layers.AvgPool2D(2, divisor_override=3))
            == "AvgPool2D(kernel_size=(2, 2), stride=(2, 2), padding=(0, 0), divisor_override=3)")


@pytest.mark.parametrize("make, x, error, message", [
    (lambda: layers.MaxPool2D(2), np.zeros((2, 3, 4)), ValueError,
     r"MaxPool2D: expected input of shape \(N, C, H, W\), got \(2, 3, 4\)"),
    (lambda: layers.AvgPool1D(2), np.zeros((2, 3, 4, 4)), ValueError,
     r"AvgPool1D: expected input of shape \(N, C, L\), got \(2, 3, 4, 4\)"),
    (lambda: layers.MaxPool2D(5, padding=1), np.zeros((1, 1, 2, 8)), ValueError,
     r"MaxPool2D: expected an input of spatial size at least \(3, 3\) \(kernel \(5, 5\), "
     r"padding \(1, 1\)\), got \(1, 1, 2, 8\)"),
    (lambda: layers.MaxPool1D(3, stride=1, ceil_mode=True), np.zeros((1, 1, 2)), ValueError,
     r"MaxPool1D: expected an input of spatial size at least \(3,\) \(kernel \(3,\), "
     r"padding \(0,\)\), got \(1, 1, 2\)"),
    (lambda: layers.MaxPool2D(2, dilation=(1, 3)), np.zeros((1, 1, 4, 3)), ValueError,
     r"MaxPool2D: expected an input of spatial size at least \(2, 4\) \(kernel \(2, 2\), "
     r"padding \(0, 0\), dilation \(1, 3\)\), got \(1, 1, 4, 3\)"),
    (lambda: layers.MaxPool1D(2, stride=1, padding=1, dilation=5), np.zeros((1, 1, 4)), ValueError,
     r"MaxPool1D: window 0 of an axis of size 4 reads only padding \(kernel \(2,\), padding "
     r"\(1,\), dilation \(5,\)\); pad less or dilate less"),
    (lambda: layers.AvgPool2D(2), np.zeros((1, 1, 4, 4), np.int32), TypeError,
     r"AvgPool2D: expected input of dtype float32 or float64, got int32"),
    (lambda: layers.GlobalAvgPool2D(), np.zeros((2, 3)), ValueError,
     r"GlobalAvgPool2D: expected input of shape \(N, C, H, W\), got \(2, 3\)"),
    (lambda: layers.GlobalAvgPool2D(), np.zeros((1, 3, 0, 4)), ValueError,
     r"GlobalAvgPool2D: expected an input with a non-empty spatial size, got \(1, 3, 0, 4\)"),
    (lambda: layers.MaxPool2D(2, padding=1), np.zeros((1, 3, 0, 4)), ValueError,
     r"MaxPool2D: expected an input with a non-empty spatial size, got \(1, 3, 0, 4\)"),
    (lambda: layers.AvgPool1D(2, padding=1), np.zeros((1, 3, 0)), ValueError,
     r"AvgPool1D: expected an input with a non-empty spatial size, got \(1, 3, 0\)"),
])
def test_bad_input(make, x, error, message):
    with pytest.raises(error, match=message):
        make()(x)


@pytest.mark.parametrize("make", [lambda: layers.MaxPool2D(2, padding=1), lambda: layers.AvgPool2D(2, padding=1)])
@pytest.mark.parametrize("reference", [False, True])
def test_refused_input_leaves_the_last_forward_to_backward(make, reference):
    layer = make()
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 6))
    with nn.use_reference(reference):
        y = layer(x)
        expected = layer.backward(np.ones_like(y))
        with pytest.raises(ValueError, match="non-empty spatial size"):
            layer(np.zeros((1, 3, 0, 6)))
        np.testing.assert_array_equal(layer.backward(np.ones_like(y)), expected)


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"MaxPool2D: padding \(2, 2\) must be at most half the kernel size \(3, 3\)"):
        layers.MaxPool2D(3, padding=2)
    with pytest.raises(TypeError, match=r"AvgPool1D: expected kernel_size to be an int or a tuple of 1 ints"):
        layers.AvgPool1D((2, 2))
    with pytest.raises(ValueError, match=r"MaxPool1D: expected kernel_size, stride, dilation >= 1"):
        layers.MaxPool1D(2, stride=0)
    with pytest.raises(ValueError, match=r"MaxPool2D: expected kernel_size, stride, dilation >= 1 "
                                         r"and padding >= 0, got \(2, 2\), \(2, 2\), \(0, 1\)"):
        layers.MaxPool2D(2, dilation=(0, 1))
    with pytest.raises(ValueError, match=r"AvgPool2D: expected divisor_override to be a positive int, got 0"):
        layers.AvgPool2D(2, divisor_override=0)


def test_nan_propagates_and_routes_to_the_last_nan_as_torch():
    x2 = np.array([[[[1.0, np.nan, 7.0, 2.0],
                     [np.nan, 5.0, 3.0, 4.0]]]])
    x1 = np.array([[[np.nan, 1.0, np.nan, 2.0]]])
    cases = [(layers.MaxPool2D(2), x2, [[[[0, 0, 1, 0], [1, 0, 0, 0]]]], "max_pool2d"),
             (layers.MaxPool1D(4), x1, [[[0, 0, 1, 0]]], "max_pool1d")]
    for layer, x, expected, _ in cases:
        for reference in (False, True):
            [y, dx], _ = run(layer, x, np.ones(layer(x).shape), reference)
            assert np.isnan(y.flat[0])
            np.testing.assert_array_equal(dx, expected)
    torch = pytest.importorskip("torch")
    for layer, x, expected, torch_name in cases:
        xt = torch.tensor(x, requires_grad=True)
        getattr(torch.nn.functional, torch_name)(xt, layer.kernel_size).sum().backward()
        np.testing.assert_array_equal(xt.grad.numpy(), expected)


def test_avg_pool_takes_pytorchs_positional_order():
    """``AvgPool2d(kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)``."""
    pool = layers.AvgPool2D(3, 2, 1, True, False, 4)
    assert (pool.ceil_mode, pool.count_include_pad, pool.divisor_override) == (True, False, 4)
    with pytest.raises(TypeError):
        layers.MaxPool2D(3, 2, 1, 1, True)         # PyTorch's fifth is return_indices: none here
