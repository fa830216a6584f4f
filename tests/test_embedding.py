"""Embedding: gradient by finite differences, fast path = reference, PyTorch equality, the
padding row, bad input."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import layers
import nn
from nn.inspect import check_intermediates


def run(layer, idx, dy, reference=False):
    layer.zero_grad()
    with nn.use_reference(reference):
        y = layer(idx)
        assert layer.backward(dy) is None
    return y, layer.weight.grad.copy()


@settings(max_examples=10, deadline=None)
@given(V=st.integers(1, 6), D=st.integers(1, 4), shape=st.lists(st.integers(1, 3), min_size=1, max_size=3),
       pad=st.booleans(), seed=st.integers(0, 1000))
def test_gradient_and_fast_equals_reference(V, D, shape, pad, seed):
    rng = np.random.default_rng(seed)
    padding_idx = int(rng.integers(V)) if pad else None
    layer = layers.Embedding(V, D, padding_idx=padding_idx, rng=seed, dtype=np.float64)
    idx = rng.integers(0, V, shape)
    if not pad:                  # by design the padding row's gradient is zero, not dL/dW[pad]
        report = check_intermediates(layer, idx)
        assert report.passed, report
    dy = rng.standard_normal(tuple(shape) + (D,))
    y_fast, g_fast = run(layer, idx, dy)
    y_ref, g_ref = run(layer, idx, dy, reference=True)
    np.testing.assert_allclose(y_fast, y_ref, rtol=1e-12, atol=0)
    np.testing.assert_allclose(g_fast, g_ref, rtol=1e-12, atol=1e-12)
    if pad:
        assert np.all(layer.weight.data[padding_idx] == 0) and np.all(g_fast[padding_idx] == 0)


def test_repeated_ids_accumulate_and_padding_stays_zero():
    layer = layers.Embedding(4, 2, padding_idx=-1, rng=0)      # -1 means row 3
    assert layer.padding_idx == 3 and np.all(layer.weight.data[3] == 0)
    idx = np.array([[1, 1, 3], [1, 0, 3]])
    y = layer(idx)
    assert y.shape == (2, 3, 2) and y.dtype == np.float32 and np.all(y[:, 2] == 0)
    layer.backward(np.ones_like(y))
    np.testing.assert_array_equal(layer.weight.grad, [[1, 1], [3, 3], [0, 0], [0, 0]])


def test_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    twin = torch.nn.Embedding(7, 3, padding_idx=2).double()
    layer = layers.Embedding(7, 3, padding_idx=2, dtype=np.float64)
    layer.load_state_dict(twin.state_dict())
    idx = rng.integers(0, 7, (4, 5))
    dy = rng.standard_normal((4, 5, 3))
    out = twin(torch.as_tensor(idx))
    out.backward(torch.tensor(dy))
    np.testing.assert_array_equal(layer(idx), out.detach().numpy())
    layer.backward(dy)
    np.testing.assert_allclose(layer.weight.grad, twin.weight.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_init_is_standard_normal():
    w = layers.Embedding(2000, 50, rng=0).weight.data
    assert abs(w.mean()) < 0.01 and abs(w.std() - 1) < 0.01


@pytest.mark.parametrize("call, error, message", [
    (lambda e: e(np.array([0, 5])), ValueError,
     r"Embedding: expected indices in \[0, 5\), got values from 0 to 5"),
    (lambda e: e(np.array([[-1, 2]])), ValueError,
     r"Embedding: expected indices in \[0, 5\), got values from -1 to 2"),
    (lambda e: e(np.array([0.0, 1.0])), TypeError, r"Embedding: expected integer indices, got dtype float64"),
    (lambda e: e([0, 1]), TypeError, r"Embedding: expected the indices to be a numpy array, got list"),
    (lambda e: layers.Embedding(5, 3, padding_idx=5), ValueError,
     r"Embedding: expected padding_idx in \[-5, 5\), got 5"),
    (lambda e: layers.Embedding(5, 3, padding_idx=True), TypeError,
     r"Embedding: expected padding_idx to be an integer or None, got True"),
    (lambda e: layers.Embedding(5, 3, padding_idx=2.0), TypeError,
     r"Embedding: expected padding_idx to be an integer or None, got 2.0"),
    (lambda e: layers.Embedding(0, 3), ValueError,
     r"Embedding: expected num_embeddings to be a positive int, got 0"),
])
def test_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call(layers.Embedding(5, 3))
