"""Dense, activations, Flatten, Dropout: finite differences, PyTorch equality, bad input."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import layers
import nn

ACTIVATIONS = [layers.ReLU, layers.LeakyReLU, layers.Tanh, layers.Sigmoid, layers.Softmax]


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 4), st.integers(1, 6), st.integers(1, 5), st.booleans(), st.booleans())
def test_dense_gradcheck(N, I, O, bias, seq):
    layer = layers.Dense(I, O, bias=bias, rng=np.random.default_rng(0))
    x = np.random.default_rng(1).standard_normal((N, 3, I) if seq else (N, I))
    report = nn.gradcheck(layer, x)
    assert report.passed, report


@pytest.mark.parametrize("cls", ACTIVATIONS + [layers.Flatten])
def test_activation_gradcheck(cls):
    x = np.random.default_rng(2).standard_normal((3, 4, 5))
    x[np.abs(x) < 1e-3] = 0.5                        # keep ReLU kinks away from the FD step
    assert nn.gradcheck(cls(), x).passed


def test_dropout_gradcheck_and_modes():
    d = layers.Dropout(0.4, rng=np.random.default_rng(0))
    x = np.random.default_rng(3).standard_normal((20, 30))
    assert nn.gradcheck(d, x).passed
    y = d(x.astype(np.float32))
    kept = y != 0
    assert 0.5 < kept.mean() < 0.7
    np.testing.assert_allclose(y[kept], x.astype(np.float32)[kept] / 0.6, rtol=1e-6)
    dx = d.backward(np.ones_like(y))
    np.testing.assert_array_equal(dx != 0, kept)            # the mask applies in backward too
    d.eval()
    x32 = x.astype(np.float32)
    assert d(x32) is x32 and d.backward(x32) is x32


def test_sigmoid_stable():
    x = np.array([-1e4, -50.0, 0.0, 50.0, 1e4], np.float32)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y = layers.Sigmoid()(x)
    np.testing.assert_allclose(y, [0, 1.9287e-22, 0.5, 1, 1], rtol=1e-4)


@settings(max_examples=10, deadline=None)
@given(st.integers(1, 5), st.integers(1, 7), st.integers(1, 6))
def test_dense_matches_torch(N, I, O):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(N + 7 * I + 31 * O)
    ours = layers.Dense(I, O, rng=rng).astype(np.float64)
    ours.bias.data[:] = rng.standard_normal(O)               # non-zero random bias
    theirs = torch.nn.Linear(I, O).double()
    theirs.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()})
    x = rng.standard_normal((N, I))
    dy = rng.standard_normal((N, O))
    xt = torch.tensor(x, requires_grad=True)
    yt = theirs(xt)
    yt.backward(torch.tensor(dy))
    np.testing.assert_allclose(ours(x), yt.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ours.backward(dy), xt.grad.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ours.weight.grad, theirs.weight.grad.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ours.bias.grad, theirs.bias.grad.numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("cls,tcls", [("ReLU", "ReLU"), ("LeakyReLU", "LeakyReLU"), ("Tanh", "Tanh"),
                                      ("Sigmoid", "Sigmoid"), ("Softmax", "Softmax")])
def test_activations_match_torch(cls, tcls):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    x, dy = rng.standard_normal((4, 6)) * 3, rng.standard_normal((4, 6))
    ours = getattr(layers, cls)()
    theirs = getattr(torch.nn, tcls)(**({"dim": -1} if tcls == "Softmax" else {}))
    xt = torch.tensor(x, requires_grad=True)
    yt = theirs(xt)
    yt.backward(torch.tensor(dy))
    np.testing.assert_allclose(ours(x), yt.detach().numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(ours.backward(dy), xt.grad.numpy(), rtol=1e-10, atol=1e-15)


def test_float32_stays_float32():
    x = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    m = nn.Sequential(layers.Dense(3, 4), layers.Tanh(), layers.Sigmoid(), layers.Softmax(), layers.ReLU())
    y = m(x)
    assert y.dtype == np.float32 and m.backward(np.ones_like(y)).dtype == np.float32


def test_dense_bad_input():
    d = layers.Dense(4, 2)
    with pytest.raises(ValueError, match=r"Dense: expected input of shape \(N, \.\.\., 4\), got \(3, 5\)"):
        d(np.zeros((3, 5), np.float32))
    with pytest.raises(TypeError, match="Dense: expected input of dtype float32.*got float64"):
        d(np.zeros((3, 4)))
    with pytest.raises(TypeError, match=r"input of dtype float32 \(the layer's dtype\), got int64; convert the array with \.astype\(np\.float32\)$"):
        d(np.zeros((3, 4), np.int64))
    with pytest.raises(TypeError, match="numpy array, got list"):
        d([[0.0] * 4])
    with pytest.raises(ValueError, match=r"Dropout: expected p in \[0.0, 1.0\], got 1.5"):
        layers.Dropout(1.5)
    with pytest.raises(TypeError, match=r"Dropout: expected p to be a number, got '0.5'"):
        layers.Dropout("0.5")
    with pytest.raises(ValueError, match=r"Softmax: expected an input with a non-empty axis -1, got shape \(2, 0\)"):
        layers.Softmax()(np.zeros((2, 0), np.float32))
    with pytest.raises(ValueError, match="LeakyReLU: expected negative_slope finite, got nan"):
        layers.LeakyReLU(float("nan"))
    with pytest.raises(TypeError, match="LeakyReLU: expected negative_slope to be a number, got 'a'"):
        layers.LeakyReLU("a")
    for start_dim in (1.7, "1", True):
        with pytest.raises(TypeError, match=f"Flatten: expected start_dim to be an int, got {start_dim!r}"):
            layers.Flatten(start_dim)
    with pytest.raises(TypeError, match=r"seed: expected a non-negative int, a np.random.SeedSequence or None, got 1.5"):
        nn.seed(1.5)
    with pytest.raises(TypeError, match="Softmax: expected axis to be an int, got 1.0"):
        layers.Softmax(axis=1.0)
    with pytest.raises(ValueError, match=r"Softmax: expected an input with an axis 2, got shape \(3, 4\)"):
        layers.Softmax(axis=2)(np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match="Flatten: expected an input with at least one axis, got a 0-d array"):
        layers.Flatten(0, -1)(np.array(1.0))
    for rng in (True, -1):                  # Dropout(0.5, True): PyTorch's inplace, not a seed
        with pytest.raises(TypeError, match=f"Dropout: expected rng to be a numpy Generator, a "
                                            f"non-negative int seed or None, got {rng!r}"):
            layers.Dropout(0.5, rng)
    for dtype in (None, False, np.int32):   # NumPy reads None as float64
        with pytest.raises(TypeError, match="Dense: expected dtype float32 or float64, got"):
            layers.Dense(2, 2, dtype=dtype)
    with pytest.raises(TypeError, match="Dense.astype: expected dtype float32 or float64, got None"):
        layers.Dense(2, 2).astype(None)
    with pytest.warns(PendingDeprecationWarning):
        matrix = np.matrix(np.ones((2, 2), np.float32))
    for array in (matrix, np.ma.masked_array(np.ones((2, 2), np.float32))):
        with pytest.raises(TypeError, match=f"Tanh: expected input to be a numpy array, got {type(array).__name__}"):
            layers.Tanh()(array)                     # np.matrix's * would be a matrix product
    for sizes, message in [((-1, 3), "in_features to be a positive int, got -1"),
                           ((3.7, 3), "in_features to be a positive int, got 3.7"),
                           ((3, 0), "out_features to be a positive int, got 0")]:
        with pytest.raises(ValueError, match=f"Dense: expected {message}"):
            layers.Dense(*sizes)


@pytest.mark.parametrize("start_dim,shape", [(1, (2, 3, 4)), (-1, (2, 3, 4)), (-3, (2, 3, 4)), (0, (2, 3))])
def test_flatten_start_dim_as_torch(start_dim, shape):
    x = np.arange(np.prod(shape), dtype=np.float64).reshape(shape)
    expected = x.reshape(shape[:start_dim % len(shape)] + (-1,))
    np.testing.assert_array_equal(layers.Flatten(start_dim)(x), expected)


@pytest.mark.parametrize("start_dim, end_dim", [(1, 2), (0, -2), (2, 3), (-2, -1), (1, 1)])
def test_flatten_start_and_end_dim_as_torch(start_dim, end_dim):
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5))
    layer = layers.Flatten(start_dim, end_dim)
    y = layer(x)
    torch = pytest.importorskip("torch")
    assert y.shape == tuple(torch.nn.Flatten(start_dim, end_dim)(torch.tensor(x)).shape)
    np.testing.assert_array_equal(layer.backward(y), x)
    with pytest.raises(ValueError, match=r"Flatten: expected start_dim=2 at or before end_dim=1"):
        layers.Flatten(2, 1)(x)
    with pytest.raises(TypeError, match="Flatten: expected end_dim to be an int, got 1.5"):
        layers.Flatten(1, 1.5)
    with pytest.raises(ValueError, match=r"Flatten: expected end_dim=4 to be an axis of the input"):
        layers.Flatten(1, 4)(x)
    assert repr(layers.Flatten(1, 2)) == "Flatten(start_dim=1, end_dim=2)" and repr(layers.Flatten()) == "Flatten()"


@pytest.mark.parametrize("start_dim", [2, -3, -5])
def test_flatten_start_dim_out_of_range(start_dim):
    with pytest.raises(ValueError, match=rf"Flatten: expected start_dim={start_dim} to be an axis of the "
                                         rf"input, in \[-2, 1\], got input of shape \(2, 3\)"):
        layers.Flatten(start_dim)(np.ones((2, 3)))


def test_relu_passes_the_gradient_of_a_nan_input_on_as_torch_does():
    relu = layers.ReLU()
    relu(np.array([np.nan, -1.0, 0.0, 2.0], np.float32))
    dx = relu.backward(np.full(4, 3.0, np.float32))
    np.testing.assert_array_equal(dx, [3.0, 0.0, 0.0, 3.0])
    assert dx.dtype == np.float32
    torch = pytest.importorskip("torch")
    xt = torch.tensor([np.nan, -1.0, 0.0, 2.0], requires_grad=True)
    torch.relu(xt).backward(torch.full((4,), 3.0))
    np.testing.assert_array_equal(dx, xt.grad.numpy())


def test_a_zero_dimensional_input_stays_an_array_through_a_model():
    model = nn.Sequential(layers.ReLU(), layers.Tanh(), layers.Dropout(0.5))
    y = model(np.array(1.5, np.float32))
    assert isinstance(y, np.ndarray) and y.shape == () and y.dtype == np.float32
    dx = model.backward(np.ones_like(y))
    assert isinstance(dx, np.ndarray) and dx.shape == ()
