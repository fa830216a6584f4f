"""`nn.inspect`: recorded intermediates, `check_intermediates`, `compare`, `watch` and
`gradient_report`.

Intermediates are checked two ways: against values recomputed here from the layer's weights
with plain NumPy (the equations of each layer's docstring), and against finite differences
(`check_intermediates`), which must also point at a deliberately broken gradient by name.
Layers that are not in `layers` yet are skipped, not failed.
"""
import re
import sys

import numpy as np
import pytest

import layers
import nn
import optim
from nn.inspect import (ActivationStats, check_intermediates, compare, gradient_report,
                        watch)


def rng(seed=0):
    return np.random.default_rng(seed)


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def has(name):
    return hasattr(layers, name)


def needs(name):
    return pytest.mark.skipif(not has(name), reason=f"layers.{name} is not available")


def corrupt(cls, tap, factor=1.1, flow=True):
    """A subclass of ``cls`` whose backward gets the gradient of intermediate ``tap`` wrong by
    ``factor``: with ``flow`` the wrong gradient is what backward goes on with, else only the
    recorded copy is wrong."""

    def _tap_grad(self, name, grad, step=None):
        if name != tap:
            return cls._tap_grad(self, name, grad, step)
        recorded = cls._tap_grad(self, name, grad * factor, step)
        return recorded if flow else grad

    return type(f"Broken{cls.__name__}", (cls,), {"_tap_grad": _tap_grad})


# =============================================================================================
# Dense: z, and the check on a layer without recurrence
# =============================================================================================

def dense(in_features=3, out_features=2, cls=None):
    nn.seed(0)
    return (cls or layers.Dense)(in_features, out_features).astype(np.float64)


def test_dense_records_z_and_its_gradient():
    layer = dense().record_intermediates()
    x = rng().standard_normal((5, 3))
    dz = rng(1).standard_normal((5, 2))
    layer(x)
    layer.backward(dz)
    W, b = layer.weight.data, layer.bias.data
    np.testing.assert_allclose(layer.intermediates["z"], x @ W.T + b, rtol=1e-13)
    np.testing.assert_array_equal(layer.intermediate_grads["z"], dz)    # z is the output: dL/dz = dy


def test_dense_records_every_step_of_a_sequence():
    layer = dense().record_intermediates()
    x = rng().standard_normal((2, 4, 3))
    layer(x)
    assert layer.intermediates["z"].shape == (2, 4, 2)


def test_check_intermediates_passes_on_a_correct_model():
    nn.seed(0)
    model = nn.Sequential(layers.Dense(3, 4), layers.Tanh(), layers.Dense(4, 2))
    report = check_intermediates(model, rng().standard_normal((5, 3)).astype(np.float32))
    assert report.passed and bool(report)
    assert [r.name for r in report.rows] == ["input", "0.weight", "0.bias", "0.z",
                                             "2.weight", "2.bias", "2.z"]
    for row in report.rows:
        assert row.exact and row.approximate and row.max_abs_diff < 1e-8
    assert report.failed == [] and report.first_failure is None
    assert "FAIL" not in str(report) and "0.z" in str(report)
    # the original model is left as it was: float32, not recording
    assert model.dtype == np.float32 and not model[0]._recording and model[0].intermediates == {}


def test_check_intermediates_replays_dropout_masks():
    nn.seed(0)
    model = nn.Sequential(layers.Dense(3, 6), layers.Dropout(0.5), layers.Dense(6, 2))
    assert check_intermediates(model, rng().standard_normal((4, 3))).passed


def test_a_wrong_recorded_gradient_is_named():
    report = check_intermediates(dense(cls=corrupt(layers.Dense, "z", flow=False)),
                                 rng().standard_normal((5, 3)))
    assert not report.passed
    assert report.failed == ["z"]                      # weight, bias, input are still right
    assert report.first_failure == "z"
    assert not report["z"].approximate and report["z"].max_abs_diff > 1e-3
    text = str(report)
    assert "FAIL" in text and "the error enters at 'z'" in text


def test_a_wrong_gradient_that_flows_is_traced_to_where_it_enters():
    nn.seed(0)
    model = nn.Sequential(layers.Dense(3, 4), layers.Tanh(), corrupt(layers.Dense, "z")(4, 2))
    report = check_intermediates(model, rng().standard_normal((5, 3)))
    assert set(report.failed) == {"input", "0.weight", "0.bias", "0.z", "2.weight", "2.bias", "2.z"}
    assert report.first_failure == "2.z"


class TanhDense(nn.Module):
    """``z = x @ W.T``, ``h = tanh(z)``; with ``bug`` the derivative of tanh is taken as
    ``1 - h`` instead of ``1 - h^2``: the gradient of ``h`` stays right, that of ``z`` is wrong."""

    def __init__(self, bug=False):
        super().__init__()
        self.weight = nn.Parameter(rng(3).standard_normal((2, 3)))
        self.bug = bug

    def forward(self, x):
        self._x = x
        z = self._tap("z", x @ self.weight.data.T)
        self._h = self._tap("h", np.tanh(z))
        return self._h

    def backward(self, dh):
        dh = self._tap_grad("h", dh)
        dz = self._tap_grad("z", dh * (1 - (self._h if self.bug else self._h ** 2)))
        self.weight.grad += dz.T @ self._x
        return dz @ self.weight.data


def test_a_layer_wrong_in_one_intermediate_is_named():
    x = rng().standard_normal((4, 3))
    assert check_intermediates(TanhDense(), x).passed
    report = check_intermediates(TanhDense(bug=True), x)
    assert report["h"].passed                          # dL/dh arrives right ...
    assert not report["z"].passed                      # ... and goes wrong through tanh'
    assert report.first_failure == "z"
    assert set(report.failed) == {"z", "weight", "input"}


def test_exact_is_stricter_than_approximate():
    # a gradient off by one part in a million: within gradcheck's tolerance, but not exact
    report = check_intermediates(dense(cls=corrupt(layers.Dense, "z", 1 + 1e-6, flow=False)),
                                 rng().standard_normal((5, 3)))
    assert report["z"].approximate and not report["z"].exact
    assert report["weight"].exact
    assert report.passed


def test_max_samples_and_names():
    layer = dense(6, 5)
    x = rng().standard_normal((4, 6))
    report = check_intermediates(layer, x, max_samples=7, names=["z", "weight"])
    assert [r.name for r in report.rows] == ["weight", "z"]
    assert all(r.checked == 7 for r in report.rows) and report.passed
    with pytest.raises(ValueError, match="no tensor named"):
        check_intermediates(layer, x, names=["nope"])
    assert [r.name for r in check_intermediates(layer, x, names="weight").rows] == ["weight"]
    assert [r.name for r in check_intermediates(layer, x, names=(n for n in ["z"])).rows] == ["z"]
    for names in (5, [["z"]]):
        with pytest.raises(TypeError, match=f"check_intermediates: expected names to be a name or an "
                                            f"iterable of names, got {re.escape(repr(names))}"):
            check_intermediates(layer, x, names=names)
    with pytest.raises(ValueError, match="check_intermediates: expected exact_tol >= 0.0, got -1"):
        check_intermediates(layer, x, exact_tol=-1)


def test_a_shared_parameter_is_one_row():
    tied = nn.Sequential(layers.Dense(3, 3, rng=0), layers.Tanh(), layers.Dense(3, 3, rng=1))
    tied[2].weight = tied[0].weight
    report = check_intermediates(tied, rng().standard_normal((2, 3)))
    names = [r.name for r in report.rows]
    assert names.count("0.weight") == 1 and "2.weight" not in names and report.passed


def test_report_table_fits_long_shapes():
    model = nn.Sequential(layers.Conv2D(128, 256, 3, rng=0))
    model(rng().standard_normal((1, 128, 3, 3)).astype(np.float32))
    model.backward(np.ones((1, 256, 1, 1), np.float32))
    header, rule, weight, bias = str(gradient_report(model)).splitlines()[:4]
    assert weight.index("(256, 128, 3, 3)") == header.index("shape")
    norm = f"{np.linalg.norm(model[0].weight.grad):.3e}"
    assert weight.index(norm) + len(norm) == header.index("|grad|") + len("|grad|")


def test_stable_table_leaves_out_machine_dependent_digits():
    report = check_intermediates(dense(), rng().standard_normal((2, 3)))
    short = report.table(errors=False)
    assert "max abs diff" not in short and "e-" not in short.splitlines()[-1]
    assert short.splitlines()[-1].split() == ["z", "(2,", "2)", "4", "True", "True", "ok"]


class ToyRNN(nn.Module):
    """``a_t = x_t W.T + h_{t-1} U.T``, ``h_t = tanh(a_t)``, recording ``a`` and ``h`` per step;
    with ``bug_step`` the gradient of ``a`` is 10% off at that step."""

    def __init__(self, bug_step=None):
        super().__init__()
        self.W = nn.Parameter(rng(5).standard_normal((2, 3)) * 0.5)
        self.U = nn.Parameter(rng(6).standard_normal((2, 2)) * 0.5)
        self.bug_step = bug_step

    def forward(self, x):
        h = np.zeros((x.shape[0], 2))
        self._x, self._hs = x, [h]
        for t in range(x.shape[1]):
            a = self._tap("a", x[:, t] @ self.W.data.T + h @ self.U.data.T, t)
            h = self._tap("h", np.tanh(a), t)
            self._hs.append(h)
        return np.stack(self._hs[1:], axis=1)

    def backward(self, dy):
        dx, dh_next = np.zeros_like(self._x), np.zeros(dy.shape[::2])
        for t in reversed(range(dy.shape[1])):
            dh = self._tap_grad("h", dy[:, t] + dh_next, t)
            da = dh * (1 - self._hs[t + 1] ** 2) * (1.1 if t == self.bug_step else 1.0)
            da = self._tap_grad("a", da, t)
            self.W.grad += da.T @ self._x[:, t]
            self.U.grad += da.T @ self._hs[t]
            dx[:, t] = da @ self.W.data
            dh_next = da @ self.U.data
        return dx


def test_per_step_intermediates_and_the_step_where_an_error_enters():
    x = rng().standard_normal((2, 4, 3))
    good = check_intermediates(ToyRNN(), x)
    assert good.passed and good["h"].shape == (2, 4, 2) and good["h"].per_step
    bad = check_intermediates(ToyRNN(bug_step=2), x)
    assert bad.first_failure == "a" and bad.first_failure_step == 2
    assert bad["a"].wrong_steps == (0, 1, 2)            # the error flows to earlier steps
    assert bad["h"].wrong_steps == (0, 1)               # and to the states before step 2
    assert "the error enters at 'a' at step 2" in str(bad)


@pytest.mark.parametrize("tap, step", [("f_l0", 3), ("f_l0_reverse", 0), ("g_l1", 3)])
def test_first_failure_follows_the_order_backward_ran(tap, step):
    # A reverse direction's backward runs from step 0 up; a deeper layer's runs first.
    nn.seed(0)
    layer = corrupt(layers.LSTM, tap)(2, 3, num_layers=2, bidirectional=True).astype(np.float64)
    report = check_intermediates(layer, rng().standard_normal((2, 4, 2)))
    assert (report.first_failure, report.first_failure_step) == (tap, step), str(report)


@pytest.mark.parametrize("cls", [layers.RNN, layers.LSTM, layers.GRU])
def test_checks_of_a_stateful_layer_start_each_evaluation_from_its_carried_state(cls):
    nn.seed(0)
    layer = cls(2, 3, stateful=True).astype(np.float64)
    x = rng().standard_normal((2, 4, 2))
    layer(x)                                            # now it carries a state into the next call
    carried = [s.copy() for s in layer._carried_state]
    assert nn.gradcheck(layer, x).passed
    assert check_intermediates(layer, x).passed
    for before, after in zip(carried, layer._carried_state):
        np.testing.assert_array_equal(before, after)   # the original is untouched


def test_an_intermediate_without_a_recorded_gradient_fails_with_a_reason():
    class Forgetful(layers.Dense):
        def _tap_grad(self, name, grad, step=None):
            return grad                                 # records nothing

    report = check_intermediates(dense(cls=Forgetful), rng().standard_normal((2, 3)))
    assert report.failed == ["z"] and "no gradient" in report["z"].note
    assert report.first_failure == "z"
    assert "backward recorded no gradient" in str(report)


# =============================================================================================
# compare
# =============================================================================================

def test_compare_prints_the_course_row(capsys):
    a = np.array([1.0, 2.0, 3.0])
    row = compare("dW", a, a.copy())
    assert row.exact and row.approximate and row.max_abs_diff == 0.0
    assert capsys.readouterr().out == "dW              | exact: True  | approximate: True  | maxdiff: 0.0e+00\n"
    row = compare("dW", a, a + 1e-12, show_diff=False)
    assert not row.exact and row.approximate
    assert capsys.readouterr().out == "dW              | exact: False | approximate: True \n"
    row = compare("dW", a, a * 1.1, file=False)
    assert not row and abs(row.max_abs_diff - 0.3) < 1e-12
    assert capsys.readouterr().out == ""
    with pytest.raises(ValueError, match="shape"):
        compare("dW", a, a[:2])
    with pytest.raises(TypeError, match=r"compare\('dW'\): expected reference to be real numbers, got an array of dtype <U1"):
        compare("dW", a, ["x", "y", "z"])
    with pytest.raises(TypeError, match="expected analytic to be real numbers, got an array of dtype complex128"):
        compare("dW", a + 0j, a)
    with pytest.raises(TypeError, match="expected analytic to be an array, got a Parameter; compare its .data"):
        compare("dW", nn.Parameter(a), a)
    inf = np.array([np.inf, 1.0])
    row = compare("dW", inf, inf.copy(), file=False)
    assert row.exact and row.approximate and row.max_abs_diff == 0.0


def test_compare_takes_a_torch_tensor_that_requires_grad():
    torch = pytest.importorskip("torch")
    a = np.array([1.0, 2.0])
    assert compare("dW", a, torch.tensor(a, requires_grad=True) * 1, file=False).exact


# =============================================================================================
# the recording switch keeps nothing extra when off
# =============================================================================================

def array_attributes(module):
    """Names of ``module``'s own attributes that are, or hold, arrays (forward caches),
    besides the registries and the intermediate stores."""
    skip = {"intermediates", "intermediate_grads", "_perturbations", "_parameters", "_buffers",
            "_modules", "_forward_pre_hooks", "_forward_hooks", "_backward_hooks"}

    def holds_array(v):
        if isinstance(v, np.ndarray):
            return True
        if isinstance(v, (tuple, list)):
            return any(holds_array(u) for u in v)
        if isinstance(v, dict):
            return any(holds_array(u) for u in v.values())
        return False
    return {k for k, v in vars(module).items() if k not in skip and holds_array(v)}


def run_once(layer, x):
    y = layer(x)
    layer.backward(np.ones_like(y))


LAYER_CASES = [
    # (layers name, constructor, input shape)
    ("Dense", lambda: layers.Dense(3, 2), (4, 3)),
    ("BatchNorm1D", lambda: layers.BatchNorm1D(3), (5, 3)),
    ("BatchNorm2D", lambda: layers.BatchNorm2D(2), (3, 2, 3, 3)),
    ("Conv1D", lambda: layers.Conv1D(2, 3, kernel_size=3, padding=1), (2, 2, 6)),
    ("Conv2D", lambda: layers.Conv2D(2, 3, kernel_size=2), (2, 2, 4, 5)),
    ("RNN", lambda: layers.RNN(3, 4), (2, 3, 3)),
    ("LSTM", lambda: layers.LSTM(3, 4), (2, 3, 3)),
    ("GRU", lambda: layers.GRU(3, 4), (2, 3, 3)),
]


def layer_cases():
    return [pytest.param(make, shape, id=name, marks=needs(name)) for name, make, shape in LAYER_CASES]


def make64(make):
    nn.seed(0)
    return make().astype(np.float64)


@pytest.mark.parametrize("make, shape", layer_cases())
def test_recording_off_keeps_no_intermediate_arrays(make, shape):
    layer = make64(make)
    x = rng().standard_normal(shape)
    run_once(layer, x)                                  # fast path, recording off
    assert layer.intermediates == {} and layer.intermediate_grads == {}
    with nn.use_reference():                            # same path as recording takes
        run_once(layer, x)
    assert layer.intermediates == {} and layer.intermediate_grads == {}
    off = array_attributes(layer)

    layer.record_intermediates(True)
    run_once(layer, x)
    assert layer.intermediates and layer.intermediate_grads
    assert array_attributes(layer) == off               # recording adds to the stores only

    layer.record_intermediates(False)
    assert layer.intermediates == {} and layer.intermediate_grads == {}
    run_once(layer, x)
    assert layer.intermediates == {} and layer.intermediate_grads == {}
    fresh = make64(make)
    run_once(fresh, x)
    assert array_attributes(layer) == array_attributes(fresh)   # the reference path's caches are gone


@pytest.mark.parametrize("make, shape", layer_cases())
def test_check_intermediates_passes_on_each_layer(make, shape):
    layer = make64(make)
    report = check_intermediates(layer, rng().standard_normal(shape))
    assert report.passed, str(report)
    assert any(r.kind == "intermediate" for r in report.rows)


BROKEN_CASES = [
    ("Dense", lambda cls: cls(3, 2), (4, 3), "z"),
    ("BatchNorm1D", lambda cls: cls(3), (5, 3), "xhat"),
    ("BatchNorm2D", lambda cls: cls(2), (3, 2, 3, 3), "xhat"),
    ("Conv2D", lambda cls: cls(2, 3, kernel_size=2), (2, 2, 4, 5), "z"),
    ("RNN", lambda cls: cls(3, 4), (2, 3, 3), "a"),
    ("LSTM", lambda cls: cls(3, 4), (2, 3, 3), "f"),
    ("GRU", lambda cls: cls(3, 4), (2, 3, 3), "n"),
]


@pytest.mark.parametrize("name, make, shape, tap",
                         [pytest.param(*case, id=f"{case[0]}-{case[3]}", marks=needs(case[0]))
                          for case in BROKEN_CASES])
def test_check_intermediates_names_a_broken_intermediate(name, make, shape, tap):
    nn.seed(0)
    layer = make(corrupt(getattr(layers, name), tap)).astype(np.float64)
    report = check_intermediates(layer, rng().standard_normal(shape))
    assert not report.passed
    assert tap in report.failed
    assert report.first_failure == tap, str(report)


# =============================================================================================
# the recorded values equal the layer's equations, recomputed here
# =============================================================================================

def recorded(layer, x):
    layer.record_intermediates(True)
    y = layer(x)
    layer.backward(np.ones_like(y))
    return layer.intermediates


@needs("BatchNorm1D")
def test_batchnorm1d_intermediates():
    layer = make64(lambda: layers.BatchNorm1D(3))
    x = rng().standard_normal((6, 3)) * 2 + 1
    taps = recorded(layer, x)
    mean, var = x.mean(axis=0), x.var(axis=0)           # biased variance normalises in training
    np.testing.assert_allclose(np.ravel(taps["mean"]), mean, rtol=1e-12)
    np.testing.assert_allclose(np.ravel(taps["var"]), var, rtol=1e-12)
    np.testing.assert_allclose(np.reshape(taps["xhat"], x.shape), (x - mean) / np.sqrt(var + 1e-5), rtol=1e-10)


@needs("BatchNorm2D")
def test_batchnorm2d_intermediates():
    layer = make64(lambda: layers.BatchNorm2D(2))
    x = rng().standard_normal((3, 2, 4, 4)) * 3 - 1
    taps = recorded(layer, x)
    mean = x.mean(axis=(0, 2, 3), keepdims=True)
    var = x.var(axis=(0, 2, 3), keepdims=True)
    np.testing.assert_allclose(np.ravel(taps["mean"]), mean.ravel(), rtol=1e-12)
    np.testing.assert_allclose(np.ravel(taps["var"]), var.ravel(), rtol=1e-12)
    np.testing.assert_allclose(np.reshape(taps["xhat"], x.shape), (x - mean) / np.sqrt(var + 1e-5), rtol=1e-10)


def patches(x, kh, kw):
    """Every (kh, kw) window of ``x (N, C, H, W)`` at stride 1, one row per output position
    ``(n, i, j)`` in row-major order, the window flattened in ``(c, u, v)`` order -- the same
    order as ``weight.reshape(out_channels, -1)``."""
    N, C, H, W = x.shape
    Ho, Wo = H - kh + 1, W - kw + 1
    return np.array([x[n, :, i:i + kh, j:j + kw].ravel()
                     for n in range(N) for i in range(Ho) for j in range(Wo)])


def as_rows(cols, N, L, K):
    """The im2col matrix in the layout of ``patches``, from the layouts an im2col may use."""
    cols = np.asarray(cols)
    if cols.shape == (N, K, L):
        return cols.transpose(0, 2, 1).reshape(N * L, K)
    if cols.shape in ((N, L, K), (N * L, K)):
        return cols.reshape(N * L, K)
    if cols.shape == (K, N * L):
        return cols.T
    raise AssertionError(f"unexpected cols shape {cols.shape} for N={N}, L={L}, K={K}")


@needs("Conv2D")
def test_conv2d_intermediates():
    layer = make64(lambda: layers.Conv2D(2, 3, kernel_size=2))
    x = rng().standard_normal((2, 2, 4, 5))
    y = layer(x)
    taps = recorded(layer, x)
    P = patches(x, 2, 2)                                 # (N*Ho*Wo, C*kh*kw) = (24, 8)
    np.testing.assert_allclose(as_rows(taps["cols"], 2, 12, 8), P, rtol=1e-15)
    W, b = layer.weight.data.reshape(3, -1), layer.bias.data
    z = (P @ W.T + b).reshape(2, 12, 3)                 # (n, position, out channel)
    np.testing.assert_allclose(y, z.transpose(0, 2, 1).reshape(2, 3, 3, 4), rtol=1e-12)
    np.testing.assert_allclose(np.reshape(taps["z"], y.shape), y, rtol=1e-12)


def rnn_reference(x, W_ih, W_hh, b_ih, b_hh):
    """``a_t = x_t W_ih.T + b_ih + h_{t-1} W_hh.T + b_hh``, ``h_t = tanh(a_t)``, ``h_{-1} = 0``."""
    h = np.zeros((x.shape[0], W_hh.shape[1]))
    out = {"a": [], "h": []}
    for t in range(x.shape[1]):
        a = x[:, t] @ W_ih.T + b_ih + h @ W_hh.T + b_hh
        h = np.tanh(a)
        out["a"].append(a)
        out["h"].append(h)
    return {k: np.stack(v, axis=1) for k, v in out.items()}


def lstm_reference(x, W_ih, W_hh, b_ih, b_hh):
    """PyTorch's LSTM, gates in the order i, f, g, o::

        [a_i, a_f, a_g, a_o] = x_t W_ih.T + b_ih + h_{t-1} W_hh.T + b_hh
        i, f, o = sigmoid(a_i, a_f, a_o),  g = tanh(a_g)
        c_t = f * c_{t-1} + i * g,         h_t = o * tanh(c_t)
    """
    N, T, _ = x.shape
    H = W_hh.shape[1]
    h, c = np.zeros((N, H)), np.zeros((N, H))
    out = {k: [] for k in ("i", "f", "g", "o", "c", "h")}
    for t in range(T):
        a = x[:, t] @ W_ih.T + b_ih + h @ W_hh.T + b_hh
        i, f = sigmoid(a[:, :H]), sigmoid(a[:, H:2 * H])
        g, o = np.tanh(a[:, 2 * H:3 * H]), sigmoid(a[:, 3 * H:])
        c = f * c + i * g
        h = o * np.tanh(c)
        for k, v in zip("ifgoch", (i, f, g, o, c, h)):
            out[k].append(v)
    return {k: np.stack(v, axis=1) for k, v in out.items()}


def gru_reference(x, W_ih, W_hh, b_ih, b_hh):
    """PyTorch's GRU, gates in the order r, z, n::

        r = sigmoid(x W_ir.T + b_ir + h W_hr.T + b_hr)
        z = sigmoid(x W_iz.T + b_iz + h W_hz.T + b_hz)
        n = tanh(x W_in.T + b_in + r * (h W_hn.T + b_hn))
        h' = (1 - z) * n + z * h
    """
    N, T, _ = x.shape
    H = W_hh.shape[1]
    h = np.zeros((N, H))
    out = {k: [] for k in ("r", "z", "n", "h")}
    for t in range(T):
        ax = x[:, t] @ W_ih.T + b_ih
        ah = h @ W_hh.T + b_hh
        r = sigmoid(ax[:, :H] + ah[:, :H])
        z = sigmoid(ax[:, H:2 * H] + ah[:, H:2 * H])
        n = np.tanh(ax[:, 2 * H:] + r * ah[:, 2 * H:])
        h = (1 - z) * n + z * h
        for k, v in zip("rznh", (r, z, n, h)):
            out[k].append(v)
    return {k: np.stack(v, axis=1) for k, v in out.items()}


@pytest.mark.parametrize("name, reference", [
    pytest.param("RNN", rnn_reference, id="RNN", marks=needs("RNN")),
    pytest.param("LSTM", lstm_reference, id="LSTM", marks=needs("LSTM")),
    pytest.param("GRU", gru_reference, id="GRU", marks=needs("GRU")),
])
def test_recurrent_intermediates_follow_the_step_equations(name, reference):
    layer = make64(lambda: getattr(layers, name)(3, 4))
    x = rng().standard_normal((2, 5, 3))
    taps = recorded(layer, x)
    p = {k: v.data for k, v in layer.named_parameters()}
    expected = reference(x, p["weight_ih_l0"], p["weight_hh_l0"], p["bias_ih_l0"], p["bias_hh_l0"])
    assert set(expected) <= set(taps)
    for key, value in expected.items():
        assert taps[key].shape == (2, 5, 4), key
        np.testing.assert_allclose(taps[key], value, rtol=1e-10, atol=1e-12, err_msg=key)
    np.testing.assert_allclose(layer(x), expected["h"], rtol=1e-10, atol=1e-12)


# =============================================================================================
# watch and gradient_report
# =============================================================================================

def relu_model():
    """Dense(2, 3) -> ReLU -> Dense(3, 1) with weights chosen so that, on positive inputs,
    hidden unit 2 (weights -1, -1) never fires."""
    model = nn.Sequential(layers.Dense(2, 3), layers.ReLU(), layers.Dense(3, 1)).astype(np.float64)
    model[0].weight.data[...] = [[1, 0], [0, 1], [-1, -1]]
    model[0].bias.data[...] = 0
    model[2].weight.data[...] = [[1, 2, 3]]
    model[2].bias.data[...] = 0.5
    return model


X_POSITIVE = np.array([[1.0, 2.0], [3.0, 1.0], [2.0, 2.0], [0.5, 0.5]])


def test_gradient_report_numbers_equal_hand_computed_ones():
    model = relu_model()
    with watch(model):
        y = model(X_POSITIVE)
    model.zero_grad()
    model.backward(np.ones_like(y))                      # L = sum(y)
    report = gradient_report(model)

    # h = relu(x W1.T) = [x1, x2, 0]; dL/dW2 = ones.T @ h = column sums of h
    s1, s2 = X_POSITIVE.sum(axis=0)                      # 6.5, 5.5
    assert report["2.weight"].grad_norm == pytest.approx(np.hypot(s1, s2))
    assert report["2.bias"].grad_norm == pytest.approx(4.0)
    # dL/dz1 = [1, 2, 0] per sample (unit 2 is dead); dW1 = dz1.T @ x = [[s1, s2], [2s1, 2s2], [0, 0]]
    assert report["0.weight"].grad_norm == pytest.approx(np.hypot(s1, s2) * np.sqrt(5))
    assert report["0.bias"].grad_norm == pytest.approx(np.sqrt(4 ** 2 + 8 ** 2))
    assert report["0.weight"].data_norm == pytest.approx(2.0)
    assert report["0.weight"].grad_ratio == pytest.approx(np.hypot(s1, s2) * np.sqrt(5) / 2)
    assert report["2.weight"].grad_ratio == pytest.approx(np.hypot(s1, s2) / np.sqrt(14))
    assert report["0.bias"].grad_ratio == float("inf")   # zero weights, nonzero gradient
    assert report["0.weight"].layer == "Dense" and report["0.weight"].update_ratio is None

    relu = report.activation("1")
    assert relu.kind == "ReLU" and relu.samples == 4 and relu.units == 3
    assert relu.dead_fraction == pytest.approx(1 / 3) and relu.saturated_fraction is None
    text = str(report)
    assert "33.3%" in text and "0.weight" in text


def test_saturation_fractions():
    model = nn.Sequential(layers.Dense(1, 2), layers.Tanh(), layers.Dense(2, 2), layers.Sigmoid()
                          ).astype(np.float64)
    model[0].weight.data[...] = [[10.0], [0.1]]
    model[0].bias.data[...] = 0
    model[2].weight.data[...] = [[10.0, 0.0], [0.0, 0.1]]
    model[2].bias.data[...] = 0
    x = np.array([[1.0], [-1.0], [0.01], [0.5]])
    with watch(model) as w:
        model(x)
    # tanh(10 x): saturated for x = 1, -1, 0.5; tanh(0.1 x) never: 3 of 8
    assert w.stats["1"].saturated_fraction == pytest.approx(3 / 8)
    t = np.tanh(x @ model[0].weight.data.T)
    s = sigmoid(t @ model[2].weight.data.T)
    assert w.stats["3"].saturated_fraction == pytest.approx(((s < 0.03) | (s > 0.97)).mean())
    assert w.stats["3"].mean == pytest.approx(s.mean())


def test_leaky_relu_counts_units_that_never_went_positive():
    model = nn.Sequential(layers.LeakyReLU(0.1))
    x = np.array([[1.0, -1.0, -2.0, 0.0], [2.0, -3.0, 1.0, -1.0]])
    with watch(model) as w:
        model(x)
    assert w.stats["0"].dead_fraction == pytest.approx(2 / 4)


def test_watch_keeps_numbers_not_arrays_and_is_removable():
    model = relu_model()
    w = watch(model)
    assert w.active and len(model[1]._forward_hooks) == 1
    model(X_POSITIVE)
    stats = w.stats["1"]
    assert isinstance(stats, ActivationStats)
    assert not any(isinstance(v, np.ndarray) for v in vars(stats).values())
    w.remove()
    assert not w.active and len(model[1]._forward_hooks) == 0
    model(X_POSITIVE[:2] * -1)                           # not watched any more
    assert w.stats["1"] is stats
    with watch(model) as w2:
        model(X_POSITIVE)
        check_intermediates(model, X_POSITIVE * -1)      # copies of the model are not watched
    assert len(model[1]._forward_hooks) == 0
    assert w2.stats["1"].dead_fraction == pytest.approx(1 / 3)


def test_update_ratios_come_from_the_optimizer_when_it_tracks_them():
    model = relu_model()
    model.backward(np.ones_like(model(X_POSITIVE)))

    class Tracking:
        track_updates = True
        update_ratios = {id(model[0].weight): 1e-3}

    report = gradient_report(model, Tracking())
    assert report["0.weight"].update_ratio == pytest.approx(1e-3)
    assert report["2.weight"].update_ratio is None
    assert "1.00e-03" in str(report)
    report = gradient_report(model, object())            # an optimizer without the feature
    assert all(p.update_ratio is None for p in report.parameters)
    assert any("set optimizer.track_updates = True before step()" in n for n in report.notes)

    class NotStepped:
        track_updates = True
        update_ratios = {}

    assert any("no step() has run since" in n for n in gradient_report(model, NotStepped()).notes)


def test_update_ratios_of_a_real_optimizer():
    import optim
    model = relu_model()
    opt = optim.SGD(model.parameters(), lr=1e-3)
    opt.track_updates = True
    model.backward(np.ones_like(model(X_POSITIVE)))
    before = model[2].weight.data.copy()
    opt.step()
    ratio = gradient_report(model, opt)["2.weight"].update_ratio
    delta = np.linalg.norm(model[2].weight.data - before)
    assert ratio == pytest.approx(delta / np.linalg.norm(before), rel=1e-2)
    opt.track_updates = False                     # later steps untracked: no stale ratios shown
    opt.step()
    report = gradient_report(model, opt)
    assert report["2.weight"].update_ratio is None and "reported no update ratios" in str(report)


class _Scaled(nn.Module):
    """A composite that records its own value around a child: ``post = 3 * inner(x)``."""

    def __init__(self):
        super().__init__()
        self.inner = layers.Dense(3, 3)

    def forward(self, x):
        return self._tap("post", self.inner(x) * 3)

    def backward(self, dy):
        return self.inner.backward(self._tap_grad("post", dy) * 3)


def test_first_failure_in_a_composite_is_its_own_gradient_before_its_childs():
    class BrokenTanh(layers.Tanh):
        def backward(self, dy):
            return dy * (1 - self._y)                 # forgot the square

    model = nn.Sequential(_Scaled(), BrokenTanh(), layers.Dense(3, 2)).astype(np.float64)
    report = check_intermediates(model, rng().standard_normal((4, 3)))
    assert report.first_failure == "0.post"
    assert [name for name, _ in report.backward_order] == [
        "2.z", "2.weight", "2.bias", "0.post", "0.inner.z", "0.inner.weight", "0.inner.bias", "input"]


def test_report_without_watching_says_how_to_get_activation_statistics():
    model = nn.Sequential(layers.Dense(2, 2), layers.ReLU())
    report = gradient_report(model)
    assert report.activations == []
    assert any("watch(model)" in n for n in report.notes)


def test_plot_writes_a_figure(tmp_path):
    pytest.importorskip("matplotlib")
    model = relu_model()
    with watch(model):
        y = model(X_POSITIVE)
    model.backward(np.ones_like(y))
    path = tmp_path / "grads.png"
    assert gradient_report(model).plot(path, dpi=40) == path
    assert path.stat().st_size > 1000 and path.read_bytes()[:4] == b"\x89PNG"


def test_plot_without_matplotlib_says_what_to_install(tmp_path, monkeypatch):
    model = relu_model()
    model.backward(np.ones_like(model(X_POSITIVE)))
    for mod in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match="pip install matplotlib"):
        gradient_report(model).plot(tmp_path / "x.png")


def test_an_initial_state_gets_a_row_as_the_input_does():
    class LeakyStateGRU(layers.GRU):
        def backward(self, dy, dstate=None):
            dx = super().backward(dy, dstate)
            self.initial_state_grad = self.initial_state_grad * 1.1     # 10% off
            return dx

    x, h0 = rng(1).standard_normal((2, 4, 2)), rng(2).standard_normal((1, 2, 3))
    for cls, failed in ((layers.GRU, []), (LeakyStateGRU, ["state"])):
        report = check_intermediates(cls(2, 3, rng=0, dtype=np.float64), x, forward_kwargs={"state": h0})
        assert report["state"].checked == h0.size and report.failed == failed


def test_watching_an_empty_batch_changes_nothing():
    model = relu_model()
    with watch(model) as w:
        model(X_POSITIVE)
        before = w.stats["1"]
        assert model(np.zeros((0,) + X_POSITIVE.shape[1:], X_POSITIVE.dtype)).shape[0] == 0
    assert w.stats["1"] is before


def test_a_leaky_relus_dead_units_are_judged_by_its_input():
    layer = layers.LeakyReLU(-0.5)                  # negative inputs give positive outputs
    x = -np.abs(rng().standard_normal((4, 5))).astype(np.float32)
    with watch(layer) as w:
        layer(x)
    assert w.stats["LeakyReLU"].dead_fraction == 1.0


def test_watching_a_forward_called_with_its_input_by_keyword():
    layer = layers.ReLU()
    x = np.array([[-1.0, 2.0], [-3.0, 4.0]], np.float32)
    with watch(layer) as w:
        layer(x=x)                                  # hooks see no keyword input: judged by y
    assert w.stats["ReLU"].dead_fraction == 0.5


def test_a_refused_input_keeps_the_record_of_the_forward_that_stands():
    layer = layers.Dense(3, 2).record_intermediates()
    y = layer(np.ones((4, 3), np.float32))
    z = layer.intermediates["z"].copy()
    with pytest.raises(ValueError, match="Dense: expected input of shape"):
        layer(np.ones((4, 5), np.float32))
    np.testing.assert_array_equal(layer.intermediates["z"], z)
    layer.backward(np.ones_like(y))
    assert set(layer.intermediate_grads) == {"z"}


def test_a_refused_backward_keeps_the_recorded_gradients():
    lstm = layers.LSTM(2, 3, rng=0, dtype=np.float64).record_intermediates()
    y = lstm(rng().standard_normal((2, 4, 2)))
    lstm.backward(np.ones_like(y))
    grads, order = dict(lstm.intermediate_grads), list(lstm.intermediate_grad_order)
    with pytest.raises(ValueError, match="dstate"):
        lstm.backward(np.ones_like(y), dstate=(np.zeros((1, 9, 3)), np.zeros((1, 9, 3))))
    assert lstm.intermediate_grads.keys() == grads.keys() and lstm.intermediate_grad_order == order
    for name, g in grads.items():
        np.testing.assert_array_equal(lstm.intermediate_grads[name], g)


@pytest.mark.parametrize("max_samples", [0, -1, 2.5, True])
def test_check_intermediates_refuses_a_bad_max_samples(max_samples):
    with pytest.raises(ValueError, match=f"check_intermediates: expected max_samples to be a positive int, got {max_samples}"):
        check_intermediates(layers.Dense(2, 2), np.ones((1, 2)), max_samples=max_samples)


def test_checkers_drop_hooks_without_copying_them():
    import threading

    class Logger:
        def __init__(self):
            self.lock, self.calls = threading.Lock(), 0      # a lock cannot be copied

        def hook(self, module, inputs, output):
            self.calls += 1

    logger = Logger()
    model = nn.Sequential(layers.Dense(3, 4), layers.Tanh()).astype(np.float64)
    model[0].register_forward_hook(logger.hook)
    x = rng().standard_normal((2, 3))
    assert nn.gradcheck(model, x).passed and check_intermediates(model, x).passed
    nn.summary(model, (3,), print_fn=None)
    assert logger.calls == 0 and len(model[0]._forward_hooks) == 1


def test_plot_names_the_values_a_log_axis_cannot_show():
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    from nn.inspect import _log_bars
    ax = Figure().subplots()
    _log_bars(ax, np.arange(4), [1e-3, np.inf, None, float("nan")], "tab:orange")
    assert [t.get_text() for t in ax.texts] == ["inf", "nan"]
    assert [b.get_height() for b in ax.patches][:1] == [1e-3]


def test_report_says_when_no_gradient_has_been_computed():
    model = relu_model()
    assert any("no backward has run" in n for n in gradient_report(model).notes)
    model.backward(np.ones_like(model(X_POSITIVE)))
    model[0].bias.grad = None
    notes = gradient_report(model).notes
    assert not any("no backward has run" in n for n in notes)
    assert "no gradient (grad is None), shown as 0: 0.bias" in notes


def test_check_intermediates_explains_a_failure_on_a_kink():
    x = np.zeros((1, 1, 2, 2))
    x[0, 0, 0, 0] = x[0, 0, 0, 1] = 1.0                  # tied max-pool inputs
    report = check_intermediates(layers.MaxPool2D(2), x)
    assert not report.passed and "a valid choice" in report["input"].hint
    assert ": the loss has a kink here" in report.table()


def test_a_failure_on_a_kink_is_not_called_the_entry_of_an_error():
    nn.seed(0)
    model = nn.Sequential(layers.Dense(3, 4, bias=False), layers.ReLU(), layers.Dense(4, 2)).astype(np.float64)
    x = np.zeros((2, 3))                          # z = 0: every ReLU sits on its kink
    report = check_intermediates(model, x)
    assert not report.passed and report.first_failure == "0.z"
    assert report["0.z"].hint.endswith("lies between them: a valid choice")
    assert "'0.z', fails on a kink where backward's value is a valid choice" in str(report)
    assert "the error enters" not in str(report)


class _UnusedTap(TanhDense):
    def forward(self, x):
        self._x = x
        z = x @ self.weight.data.T
        self._tap("z", z)                         # the nudged copy it returns is dropped
        self._h = self._tap("h", np.tanh(z))
        return self._h


def test_a_tap_forward_does_not_use_is_named_as_such_not_as_a_wrong_gradient():
    report = nn.check_intermediates(_UnusedTap(), rng(0).standard_normal((4, 3)))
    assert report.failed == ["z"] and report["z"].hint == nn.inspect.UNUSED_TAP
    assert "'z', is recorded but not used by forward: fix that tap first" in report.table()
    assert "the error enters" not in report.table()


class _ShiftReLU(nn.Module):
    """``z = x + b`` (recorded and used), ``relu(z)``; ``bug`` forgets ReLU's mask in backward."""

    def __init__(self, bug):
        super().__init__()
        self.b = nn.Parameter(np.zeros(3))
        self.bug = bug

    def forward(self, x):
        z = self._tap("z", x + self.b.data)
        self._mask = z > 0
        return np.maximum(z, 0)

    def backward(self, dy):
        dz = self._tap_grad("z", dy if self.bug else dy * self._mask)
        self.b.grad += dz.sum(axis=0)
        return dz


def test_a_used_tap_with_a_zero_derivative_is_not_called_unused():
    x = -1.0 - rng(0).random((2, 3))                      # every unit dead: numeric gradients 0
    report = nn.check_intermediates(_ShiftReLU(bug=True), x)
    assert report["z"].hint == "" and "the error enters at 'z'" in report.table()
    assert nn.check_intermediates(_ShiftReLU(bug=False), x).passed


def test_gradient_report_names_frozen_parameters_and_their_zero_update():
    model = nn.Sequential(layers.Dense(3, 4), layers.Tanh(), layers.Dense(4, 2))
    opt = optim.SGD(model.parameters(), lr=0.1)
    opt.track_updates = True
    model[0].requires_grad_(False)
    model(np.ones((2, 3), np.float32))
    model.backward(np.ones((2, 2), np.float32))
    opt.step()
    report = nn.gradient_report(model, opt)
    updates = {p.name: p.update_ratio for p in report.parameters}
    assert updates["0.weight"] == updates["0.bias"] == 0.0 and updates["2.weight"] > 0
    assert "frozen (requires_grad=False), left alone by the optimizer: 0.weight, 0.bias" in report.notes
    model.requires_grad_(False)
    opt.step()
    notes = nn.gradient_report(model, opt).notes
    assert not any("no step() has run" in n for n in notes)
