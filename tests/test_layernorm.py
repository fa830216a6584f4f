"""LayerNorm: finite differences, fast path = reference, PyTorch equality, bad input."""
import copy

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import layers
import nn


def run(layer, x, dy, reference=False):
    layer = copy.deepcopy(layer)
    with nn.use_reference(reference):
        y = layer(x)
        dx = layer.backward(dy)
    return [y, dx] + [p.grad for p in layer.parameters()]


def make(shape, k, affine, seed, dtype=np.float64):
    """A LayerNorm over the last ``k`` dims of ``shape`` with random affine parameters."""
    rng = np.random.default_rng(seed)
    layer = layers.LayerNorm(shape[len(shape) - k:], elementwise_affine=affine, dtype=dtype)
    for p in layer.parameters():
        p.data[...] = rng.standard_normal(p.shape)
    return layer, (3 * rng.standard_normal(shape) + 1).astype(dtype), rng


shapes = st.lists(st.integers(1, 4), min_size=1, max_size=3).flatmap(
    lambda s: st.tuples(st.just(tuple(s)), st.integers(1, len(s))))


@settings(max_examples=15, deadline=None)
@given(shape_k=shapes, affine=st.booleans(), seed=st.integers(0, 1000))
def test_gradcheck_and_fast_equals_reference(shape_k, affine, seed):
    shape, k = shape_k
    if int(np.prod(shape[len(shape) - k:])) == 1:
        shape = shape[:-1] + (2,)                    # one value per group: xhat is identically 0
    layer, x, rng = make(shape, k, affine, seed)
    report = nn.gradcheck(layer, x)
    assert report.passed, report
    dy = rng.standard_normal(shape)
    for dtype, tol in ((np.float64, 1e-10), (np.float32, 1e-5)):
        fast = run(layer.astype(dtype), x.astype(dtype), dy.astype(dtype))
        ref = run(layer, x.astype(dtype), dy.astype(dtype), reference=True)
        for a, b in zip(fast, ref):
            np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize("offset, spread", [(1.0, 1e-3), (1e3, 1e-2), (1e4, 1.0)])
def test_fast_equals_reference_for_values_far_from_zero(offset, spread):
    """Both paths take the statistics in float64: in float32 a row of 1000 + 0.01 * noise
    would lose to rounding the digits that normalisation magnifies a hundredfold."""
    rng = np.random.default_rng(0)
    layer = layers.LayerNorm(512)
    x = (offset + spread * rng.standard_normal((64, 512))).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    exact = run(layer.astype(np.float64), x.astype(np.float64), dy.astype(np.float64))
    layer.astype(np.float32)
    for reference in (False, True):
        for ours, truth in zip(run(layer, x, dy, reference), exact):
            np.testing.assert_allclose(ours, truth, rtol=1e-5, atol=1e-5)


def test_matches_torch():
    torch = pytest.importorskip("torch")
    layer, x, rng = make((3, 4, 5, 6), 2, True, 0)
    twin = torch.nn.LayerNorm((5, 6)).double()
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in layer.state_dict().items()})
    dy = rng.standard_normal(x.shape)
    xt = torch.tensor(x, requires_grad=True)
    out = twin(xt)
    out.backward(torch.tensor(dy))
    y, dx, dw, db = run(layer, x, dy)
    for ours, theirs in ((y, out), (dx, xt.grad), (dw, twin.weight.grad), (db, twin.bias.grad)):
        np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=1e-10, atol=1e-10)


def test_output_is_normalized_and_defaults_are_pytorch():
    layer = layers.LayerNorm(8)
    assert layer.weight.dtype == np.float32 and np.all(layer.weight.data == 1) and np.all(layer.bias.data == 0)
    y = layer(np.random.default_rng(0).standard_normal((4, 3, 8)).astype(np.float32) * 5 + 2)
    np.testing.assert_allclose(y.mean(-1), 0, atol=1e-5)
    np.testing.assert_allclose(y.var(-1), 1, atol=1e-3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_without_affine_weight_and_bias_are_none_as_in_torch(dtype):
    layer = layers.LayerNorm(8, elementwise_affine=False)
    assert layer.weight is None and layer.bias is None
    assert layer.parameters() == [] and layer.state_dict() == {}
    x = np.random.default_rng(1).standard_normal((3, 8)).astype(dtype)
    y = layer(x)                                 # no array held: any float dtype
    assert y.dtype == dtype and layer.backward(np.ones_like(y)).dtype == dtype
    torch = pytest.importorskip("torch")
    twin = torch.nn.LayerNorm(8, elementwise_affine=False)
    assert twin.weight is None and twin.bias is None and twin.state_dict() == {}
    np.testing.assert_allclose(y, twin(torch.from_numpy(x)).numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("reference", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_constant_row_normalizes_to_exactly_zero(dtype, reference):
    """Even far from zero, where a running sum misses the mean by an ulp; with eps=0 it is 0/0,
    nan, as in PyTorch."""
    layer, bare = layers.LayerNorm(8, dtype=dtype), layers.LayerNorm(8, eps=0, dtype=dtype)
    with nn.use_reference(reference):
        assert np.array_equal(layer(np.full((2, 8), 1e4 + 0.3, dtype)), np.zeros((2, 8), dtype))
        with np.errstate(divide="ignore", invalid="ignore"):
            assert np.isnan(bare(np.full((1, 8), 3.3, dtype))).all()


@pytest.mark.parametrize("call, error, message", [
    (lambda: layers.LayerNorm(4)(np.zeros((2, 5), np.float32)), ValueError,
     r"LayerNorm: expected input of shape \(\.\.\., 4\), got \(2, 5\)"),
    (lambda: layers.LayerNorm((2, 3))(np.zeros(3, np.float32)), ValueError,
     r"LayerNorm: expected input of shape \(\.\.\., 2, 3\), got \(3,\)"),
    (lambda: layers.LayerNorm(4)(np.zeros((2, 4))), TypeError, r"LayerNorm: expected input of dtype float32"),
    (lambda: layers.LayerNorm(4)(np.zeros((2, 4), np.int32)), TypeError,
     r"LayerNorm: expected input of dtype float32 \(the layer.s dtype\), got int32"),
    (lambda: layers.LayerNorm(0), ValueError, r"LayerNorm: expected normalized_shape to be a positive int"),
    (lambda: layers.LayerNorm(4, eps="a"), TypeError, r"LayerNorm: expected eps to be a number, got 'a'"),
    (lambda: layers.LayerNorm(4, eps=-1e-5), ValueError, r"LayerNorm: expected eps >= 0.0, got -1e-05"),
    (lambda: layers.LayerNorm(4.0), ValueError, r"LayerNorm: expected normalized_shape .*, got 4.0"),
    (lambda: layers.LayerNorm((3, True)), ValueError, r"LayerNorm: expected normalized_shape .*, got \(3, True\)"),
    (lambda: layers.LayerNorm(4).backward(np.zeros((2, 4), np.float32)), ValueError,
     r"LayerNorm.backward called before forward"),
])
def test_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call()
