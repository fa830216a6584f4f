"""BatchNorm1D and BatchNorm2D: finite differences in both modes, fast path == reference,
PyTorch equality (outputs, gradients, running statistics, state_dict) and bad input."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import layers
import nn
from nn.inspect import check_intermediates

SHAPES = [(layers.BatchNorm1D, (6, 3)), (layers.BatchNorm1D, (3, 4, 5)), (layers.BatchNorm2D, (3, 2, 4, 5))]


def make_bn(cls, shape, dtype=np.float64, seed=0, training=True, **kwargs):
    """A layer with random gamma, beta and running statistics, and an input for it."""
    rng = np.random.default_rng(seed)
    C = shape[1]
    layer = cls(C, dtype=dtype, **kwargs).train(training)
    if layer.weight is not None:
        layer.weight.data[:] = rng.standard_normal(C)
        layer.bias.data[:] = rng.standard_normal(C)
    layer.running_mean = rng.standard_normal(C).astype(dtype)
    layer.running_var = rng.uniform(0.5, 2.0, C).astype(dtype)
    return layer, (2 + 3 * rng.standard_normal(shape)).astype(dtype)


def run(layer, x, dy=None, reference=False):
    layer.zero_grad()
    with nn.use_reference(reference):
        y = layer(x)
    if dy is None:
        dy = np.random.default_rng(7).standard_normal(y.shape).astype(y.dtype)
    out = [y, layer.backward(dy)] + [p.grad.copy() for p in layer.parameters()]
    return out + [layer.running_mean.copy(), layer.running_var.copy()], dy


def assert_close(actual, expected, rtol):
    for a, b in zip(actual, expected):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * max(1.0, np.abs(b).max()))


@pytest.mark.parametrize("cls, shape", SHAPES)
@pytest.mark.parametrize("training", [True, False])
def test_gradcheck(cls, shape, training):
    layer, x = make_bn(cls, shape, training=training)
    report = nn.gradcheck(layer, x)
    assert report.passed, report


@pytest.mark.parametrize("training", [True, False])
def test_intermediates_gradcheck(training):
    layer, x = make_bn(layers.BatchNorm2D, (3, 2, 3, 4), training=training)
    report = check_intermediates(layer, x)
    assert report.passed, report
    layer.record_intermediates()
    layer(x)
    assert set(layer.intermediates) == {"mean", "var", "xhat", "y"}


@settings(max_examples=20, deadline=None)
@given(st.sampled_from(SHAPES), st.integers(1, 4), st.booleans(), st.booleans(),
       st.sampled_from([np.float32, np.float64]))
def test_fast_equals_reference(cls_shape, C, training, affine, dtype):
    cls, shape = cls_shape
    shape = (shape[0], C) + shape[2:]
    results = []
    for reference in (False, True):
        layer, x = make_bn(cls, shape, dtype, training=training, affine=affine)
        results.append(run(layer, x, None, reference)[0])
    assert_close(*results, 1e-5 if dtype == np.float32 else 1e-10)


@settings(max_examples=20, deadline=None)
@given(st.sampled_from(SHAPES), st.integers(1, 4), st.booleans(), st.sampled_from([0.1, 0.5, None]),
       st.booleans())
def test_matches_torch(cls_shape, C, training, momentum, reference):
    torch = pytest.importorskip("torch")
    cls, shape = cls_shape
    shape = (shape[0], C) + shape[2:]
    layer, x = make_bn(cls, shape, training=training, momentum=momentum)
    twin = getattr(torch.nn, cls.__name__.replace("D", "d"))(C, momentum=momentum).double().train(training)
    twin.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in layer.state_dict().items()})
    ours, dy = run(layer, x, None, reference)
    ours, dy = run(layer, x, dy, reference)          # twice: the running statistics move twice
    for _ in range(2):
        xt = torch.from_numpy(x).requires_grad_(True)
        twin.zero_grad()
        yt = twin(xt)
        yt.backward(torch.from_numpy(dy))
    theirs = [yt.detach().numpy(), xt.grad.numpy(), twin.weight.grad.numpy(), twin.bias.grad.numpy(),
              twin.running_mean.numpy(), twin.running_var.numpy()]
    assert_close(ours, theirs, 1e-10)
    assert int(layer.num_batches_tracked) == int(twin.num_batches_tracked)


@pytest.mark.parametrize("cls, shape", SHAPES)
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("reference", [False, True])
def test_without_running_statistics_every_call_uses_its_batch(cls, shape, affine, reference):
    rng = np.random.default_rng(1)
    x = (2 + 3 * rng.standard_normal(shape))
    layer = cls(shape[1], affine=affine, track_running_stats=False, dtype=np.float64)
    assert layer.running_mean is layer.running_var is layer.num_batches_tracked is None
    assert nn.gradcheck(layer.eval(), x).passed
    torch = pytest.importorskip("torch")
    twin = getattr(torch.nn, cls.__name__.replace("D", "d"))(
        shape[1], affine=affine, track_running_stats=False).double()
    assert list(layer.state_dict()) == list(twin.state_dict())
    if affine:
        layer.weight.data[:], layer.bias.data[:] = rng.standard_normal((2, shape[1]))
        twin.load_state_dict({k: torch.from_numpy(v) for k, v in layer.state_dict().items()})
    for training in (True, False):
        layer.train(training), twin.train(training)
        ours, dy = run_without_running(layer, x, reference)
        xt = torch.from_numpy(x).requires_grad_(True)
        twin.zero_grad()
        yt = twin(xt)
        yt.backward(torch.from_numpy(dy))
        theirs = [yt.detach().numpy(), xt.grad.numpy()] + [p.grad.numpy() for p in twin.parameters()]
        assert_close(ours, theirs, 1e-10)


def run_without_running(layer, x, reference):
    layer.zero_grad()
    with nn.use_reference(reference):
        y = layer(x)
    dy = np.random.default_rng(7).standard_normal(y.shape)
    return [y, layer.backward(dy)] + [p.grad.copy() for p in layer.parameters()], dy


def test_without_running_statistics_or_parameters_any_float_dtype_goes():
    layer = layers.BatchNorm1D(2, affine=False, track_running_stats=False)
    for dtype in (np.float32, np.float64):
        assert layer.eval()(np.arange(6, dtype=dtype).reshape(3, 2)).dtype == dtype
    with pytest.raises(ValueError, match=r"BatchNorm1D: expected more than 1 value per channel "
                                         r"with track_running_stats=False, got input \(1, 2\)"):
        layer(np.zeros((1, 2), np.float32))               # batch statistics in evaluation too
    assert repr(layer) == "BatchNorm1D(2, eps=1e-05, momentum=0.1, affine=False, track_running_stats=False)"


def test_state_dict_matches_torch():
    torch = pytest.importorskip("torch")
    for ours, theirs in [(layers.BatchNorm1D(5), torch.nn.BatchNorm1d(5)),
                         (layers.BatchNorm2D(3), torch.nn.BatchNorm2d(3))]:
        ours_sd, theirs_sd = ours.state_dict(), theirs.state_dict()
        assert list(ours_sd) == list(theirs_sd)
        for k in ours_sd:
            assert ours_sd[k].shape == tuple(theirs_sd[k].shape)
            np.testing.assert_array_equal(ours_sd[k], theirs_sd[k].numpy())
        assert ours_sd["num_batches_tracked"].dtype == np.int64
        ours.load_state_dict(theirs_sd)                 # and back


def test_float32_close_to_float64():
    layer, x = make_bn(layers.BatchNorm2D, (8, 4, 6, 6), np.float64)
    exact, dy = run(layer, x)
    layer32, _ = make_bn(layers.BatchNorm2D, (8, 4, 6, 6), np.float32)
    approx, _ = run(layer32, x.astype(np.float32), dy.astype(np.float32))
    for a, b in zip(approx, exact):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * np.abs(b).max())


@pytest.mark.parametrize("scale", [1e14, 1e16])
def test_float32_reference_backward_of_a_huge_spread_keeps_its_variance_term(scale):
    """With std ~1e14 and more, (var + eps)^(-3/2) is below float32's range; the reference
    path still agrees with the fast path's closed form (and with float64)."""
    x = (np.random.default_rng(0).normal(size=(16, 2)) * scale).astype(np.float32)
    dy = np.random.default_rng(1).normal(size=(16, 2)).astype(np.float32)
    layer, layer64 = layers.BatchNorm1D(2), layers.BatchNorm1D(2, dtype=np.float64)
    with nn.use_reference():
        layer(x)
        dx = layer.backward(dy)
    layer64(x.astype(np.float64))
    exact = layer64.backward(dy.astype(np.float64))
    np.testing.assert_allclose(dx, exact, rtol=1e-4, atol=1e-5 * np.abs(exact).max())


@pytest.mark.parametrize("cls, shape", [(layers.BatchNorm1D, (200_000, 3)),
                                        (layers.BatchNorm1D, (2000, 3, 100)),
                                        (layers.BatchNorm1D, (2, 1, 1_000_000))])
def test_float32_batch_statistics_of_a_large_batch_keep_their_digits(cls, shape):
    """Far from zero (mean 100, std 0.5) over 200,000 or more values a channel, the fast path's
    float32 output and running variance stay within float32's reach of float64's."""
    x = np.random.default_rng(0).normal(100, 0.5, shape).astype(np.float32)
    layer, layer64 = cls(shape[1]), cls(shape[1], dtype=np.float64)
    y, exact = layer(x), layer64(x.astype(np.float64))
    np.testing.assert_allclose(y, exact, atol=1e-4)
    np.testing.assert_allclose(layer.running_var, layer64.running_var, rtol=1e-5)


def test_eval_uses_running_statistics_and_keeps_them():
    layer, x = make_bn(layers.BatchNorm1D, (6, 3), training=False)
    mean, var = layer.running_mean.copy(), layer.running_var.copy()
    y = layer(x)
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-5) * layer.weight.data + layer.bias.data)
    np.testing.assert_array_equal(layer.running_mean, mean)
    assert int(layer.num_batches_tracked) == 0


@pytest.mark.parametrize("reference", [False, True])
@pytest.mark.parametrize("training", [True, False])
def test_backward_follows_the_mode_of_its_forward(training, reference):
    # Switching train()/eval() between forward and backward must not change the gradient.
    dy = np.random.default_rng(5).standard_normal((6, 3))
    grads = []
    for switch in (False, True):
        layer, x = make_bn(layers.BatchNorm1D, (6, 3), training=training)
        with nn.use_reference(reference):
            layer(x)
        if switch:
            layer.train(not training)
        grads.append([layer.backward(dy), layer.weight.grad, layer.bias.grad])
    for a, b in zip(*grads):
        np.testing.assert_array_equal(a, b)


def test_same_bits_twice():
    results = [run(*make_bn(layers.BatchNorm2D, (8, 6, 9, 7), np.float32))[0] for _ in range(2)]
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_a_numpy_momentum_keeps_the_layers_dtype():
    bn = layers.BatchNorm2D(3, momentum=np.float64(0.1))
    x = np.random.default_rng(0).standard_normal((4, 3, 2, 2)).astype(np.float32)
    bn(x)
    assert bn.running_mean.dtype == bn.running_var.dtype == np.float32
    bn.eval()(x)                                     # still takes the layer's float32


@pytest.mark.parametrize("num_features", [0, -1, 2.0])
def test_bad_num_features(num_features):
    with pytest.raises(ValueError, match=f"BatchNorm1D: expected num_features to be a positive int, got {num_features}"):
        layers.BatchNorm1D(num_features)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(eps=-1), ValueError, "BatchNorm1D: expected eps > 0, got -1"),
    (dict(eps=0), ValueError, "BatchNorm1D: expected eps > 0, got 0"),
    (dict(eps="a"), TypeError, "BatchNorm1D: expected eps to be a number, got 'a'"),
    (dict(momentum=5), ValueError, r"BatchNorm1D: expected momentum in \[0.0, 1.0\], got 5"),
    (dict(momentum=float("nan")), ValueError, "expected momentum in"),
    (dict(momentum="a"), TypeError, "BatchNorm1D: expected momentum to be a number"),
])
def test_bad_eps_and_momentum(kwargs, error, message):
    with pytest.raises(error, match=message):
        layers.BatchNorm1D(3, **kwargs)


def test_flops_and_repr():
    bn = layers.BatchNorm2D(4)
    assert bn.flops((2, 4, 3, 3), (2, 4, 3, 3)) == 72 * 7
    assert bn.eval().flops((2, 4, 3, 3), (2, 4, 3, 3)) == 72 * 2
    assert repr(bn) == "BatchNorm2D(4, eps=1e-05, momentum=0.1)"


@pytest.mark.parametrize("make, x, error, message", [
    (lambda: layers.BatchNorm2D(3), np.zeros((2, 4, 5, 5), np.float32), ValueError,
     r"BatchNorm2D: expected input of shape \(N, 3, H, W\), got \(2, 4, 5, 5\)"),
    (lambda: layers.BatchNorm2D(3), np.zeros((2, 3, 5), np.float32), ValueError,
     r"BatchNorm2D: expected input of shape \(N, 3, H, W\), got \(2, 3, 5\)"),
    (lambda: layers.BatchNorm1D(3), np.zeros((2, 3, 5, 5), np.float32), ValueError,
     r"BatchNorm1D: expected input of shape \(N, 3\) or \(N, 3, L\), got \(2, 3, 5, 5\)"),
    (lambda: layers.BatchNorm1D(3), np.zeros((1, 3), np.float32), ValueError,
     r"BatchNorm1D: expected more than 1 value per channel when training, got input \(1, 3\)"),
    (lambda: layers.BatchNorm1D(3), np.zeros((4, 3)), TypeError,
     r"BatchNorm1D: expected input of dtype float32 \(the layer's dtype\), got float64"),
])
def test_bad_input(make, x, error, message):
    with pytest.raises(error, match=message):
        make()(x)
