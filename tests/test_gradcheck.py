"""nn.gradcheck must pass correct backwards and catch wrong ones."""
import re

import numpy as np
import pytest

import layers
import nn
from nn.gradcheck import kink_hint


class OffByTenPercent(layers.Dense):
    """A Dense whose weight gradient is 10% too large in exactly one element."""

    def backward(self, dz):
        dx = super().backward(dz)
        self.weight.grad[1, 2] *= 1.1
        return dx


class WrongInputGrad(layers.Tanh):
    def backward(self, dy):
        dx = super().backward(dy)
        dx[0, 0] *= 0.9
        return dx


def test_passes_correct_backward_and_prints_table():
    m = nn.Sequential(layers.Dense(4, 3), layers.Tanh(), layers.Dense(3, 2))
    report = nn.gradcheck(m, np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32))
    assert report.passed and bool(report)
    text = str(report)
    assert "input" in text and "0.weight" in text and "max rel err" in text and "FAIL" not in text


def test_catches_one_element_off_by_ten_percent():
    layer = OffByTenPercent(4, 3, rng=np.random.default_rng(1))
    report = nn.gradcheck(layer, np.random.default_rng(2).standard_normal((5, 4)))
    assert not report.passed
    bad = report["weight"]
    assert not bad.passed and bad.worst_index == (1, 2)
    assert report["input"].passed and report["bias"].passed
    assert "FAIL" in str(report)


def test_catches_wrong_input_gradient():
    report = nn.gradcheck(WrongInputGrad(), np.random.default_rng(3).standard_normal((3, 3)))
    assert not report["input"].passed and report["input"].worst_index == (0, 0)


class TransposedInputGrad(layers.Dense):
    def backward(self, dz):
        return super().backward(dz).T.copy()


class NoInputGrad(layers.Dense):
    def backward(self, dz):
        super().backward(dz)


@pytest.mark.parametrize("layer, got", [(TransposedInputGrad(3, 2), r"float64 \(3, 2\)"),
                                        (NoInputGrad(3, 2), "NoneType")])
def test_a_backward_returning_a_wrong_dx_is_named(layer, got):
    message = (rf"{type(layer).__name__}.backward returned {got} as dx; expected an array of its "
               r"input's shape and dtype, float64 \(2, 3\)")
    for check in (nn.gradcheck, nn.check_intermediates):
        with pytest.raises(ValueError, match=message):
            check(layer, np.ones((2, 3)))


class WrongStateGrad(layers.GRU):
    def input_gradients(self):
        return {"state": self.initial_state_grad[:, :1]}


def test_a_wrong_shaped_extra_input_gradient_fails_its_row():
    layer, x = WrongStateGrad(2, 3, rng=0, dtype=np.float64), np.ones((2, 4, 2))
    kwargs = {"state": np.zeros((1, 2, 3))}
    message = r"backward gave a gradient of shape \(1, 1, 3\), expected \(1, 2, 3\)"
    report = nn.gradcheck(layer, x, forward_kwargs=kwargs)
    assert not report["state"].passed and report["input"].passed and re.search(message, str(report))
    row = next(r for r in nn.check_intermediates(layer, x, forward_kwargs=kwargs).rows if r.name == "state")
    assert not row.approximate and re.search(message, row.note)


@pytest.mark.parametrize("tool", [
    lambda m: nn.gradcheck(m, np.ones(2)), lambda m: nn.check_intermediates(m, np.ones(2)),
    lambda m: nn.watch(m), lambda m: nn.gradient_report(m), lambda m: nn.summary(m, (2,)),
])
def test_the_tools_name_themselves_when_given_no_module(tool):
    with pytest.raises(TypeError, match=r"^\w+: expected (the module|model) to be an nn.Module, got NoneType$"):
        tool(None)


def test_a_check_of_nothing_is_refused():
    for check in (nn.gradcheck, nn.check_intermediates):
        with pytest.raises(ValueError, match=f"{check.__name__}: nothing to check -- ReLU has no parameters"):
            check(layers.ReLU(), np.ones(3), check_input=False)


def test_sampled_mode_checks_a_subset():
    layer = layers.Dense(50, 40)
    report = nn.gradcheck(layer, np.random.default_rng(4).standard_normal((3, 50)), max_samples=25)
    assert report.passed
    assert report["weight"].checked == 25 and report["weight"].shape == (40, 50)
    with pytest.raises(KeyError, match=r"no row 'W'; the rows are \['input', 'weight', 'bias'\]"):
        report["W"]
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError, match=f"gradcheck: expected max_samples .* got {bad}"):
            nn.gradcheck(layer, np.zeros((1, 50)), max_samples=bad)


def test_runs_on_a_float64_copy():
    layer = layers.Dense(3, 2)
    before = layer.weight.data.copy()
    nn.gradcheck(layer, np.ones((2, 3), np.float32))
    assert layer.weight.data.dtype == np.float32
    np.testing.assert_array_equal(layer.weight.data, before)
    assert not layer.weight.grad.any()


def test_hooks_stay_on_the_original():
    calls = []
    model = nn.Sequential(layers.Dense(3, 2), layers.Tanh())
    model[0].register_forward_hook(lambda module, inputs, out: calls.append("forward") or out * 2)
    model[1].register_backward_hook(lambda module, dx, dy: calls.append("backward"))
    x = np.random.default_rng(0).standard_normal((2, 3))
    assert nn.gradcheck(model, x).passed                  # the function backward differentiates
    assert nn.check_intermediates(model, x).passed and not calls
    model(x.astype(np.float32))
    assert calls == ["forward"]                          # still registered on the model


def test_integer_input_passes_through_unchecked():
    emb = layers.Embedding(10, 4, rng=np.random.default_rng(5))
    report = nn.gradcheck(emb, np.array([[1, 2, 0], [3, 3, 9]]))
    assert report.passed and [r.name for r in report.results] == ["weight"]


@pytest.mark.parametrize("pack", [tuple, list])
def test_a_state_given_as_a_tuple_or_a_list_is_checked(pack):
    lstm = layers.LSTM(2, 3, rng=0, dtype=np.float64)
    rng = np.random.default_rng(6)
    state = pack(rng.standard_normal((1, 2, 3)) for _ in range(2))
    report = nn.gradcheck(lstm, rng.standard_normal((2, 4, 2)), forward_kwargs={"state": state})
    assert report.passed and {"state[0]", "state[1]"} <= {r.name for r in report.results}


def test_numerical_gradient_wants_float64():
    x = np.array([0.3, -1.2])
    np.testing.assert_allclose(nn.numerical_gradient(lambda: float((x ** 2).sum()), x, [(0,), (1,)]),
                               2 * x, rtol=1e-8)
    with pytest.raises(TypeError, match="numerical_gradient: expected a float64 array .* got a float32 array"):
        nn.numerical_gradient(lambda: 0.0, x.astype(np.float32), [(0,)])


def test_a_failure_on_a_kink_says_so():
    """Tied max-pool inputs: no derivative there, and the report says why the check fails;
    a smooth function's wrong gradient gets no such hint."""
    x = np.zeros((1, 1, 2, 2))
    x[0, 0, 0, 0] = x[0, 0, 0, 1] = 1.0
    report = nn.gradcheck(layers.MaxPool2D(2), x)
    assert not report.passed
    assert "the loss has a kink here" in report["input"].hint and "a valid choice" in report["input"].hint
    assert "input at (0, 0, 0, 1): the loss has a kink here" in str(report)

    smooth = nn.gradcheck(WrongInputGrad(), np.random.default_rng(0).standard_normal((2, 3)))
    assert not smooth.passed and smooth["input"].hint == ""


def test_kink_hint_judges_the_analytic_value():
    relu_at_zero = lambda h: max(h, 0.0) * 2.0       # slopes 0 (left) and 2 (right)
    assert kink_hint(relu_at_zero, 1e-6, 0.0).endswith("a valid choice")
    assert "lies outside them: wrong, unless several kinks meet here" in kink_hint(relu_at_zero, 1e-6, 3.0)
    assert kink_hint(lambda h: max(h, 0.0) * 2e-4, 1e-6, 0.0).endswith("a valid choice")   # small slopes
    assert kink_hint(lambda h: 3.0 * h + h * h, 1e-6, 1.0) == ""
    assert kink_hint(lambda h: 3.0 * h + 1e4 * h * h, 1e-6, 1.0) == ""    # strongly curved, no kink


@pytest.mark.parametrize("check", [nn.gradcheck, nn.inspect.check_intermediates])
@pytest.mark.parametrize("kwargs, error, message", [
    (dict(eps=0), ValueError, r"expected eps > 0 \(the step of the central differences\), got 0"),
    (dict(atol=-1e-6), ValueError, r"expected atol >= 0.0, got -1e-06"),
    (dict(rtol=float("nan")), ValueError, r"expected rtol >= 0.0, got nan"),
    (dict(seed="a"), TypeError, r"expected seed to be an int, got 'a'"),
    (dict(seed=-1), ValueError, r"expected seed >= 0, got -1"),
    (dict(forward_kwargs=[1]), TypeError, r"expected forward_kwargs to be a dict .* got list"),
    (dict(check_input="no"), TypeError, r"expected check_input to be True or False, got 'no'"),
])
def test_bad_settings_are_refused_before_any_work(check, kwargs, error, message):
    name = check.__name__
    with pytest.raises(error, match=f"^{name}: {message}"):
        check(layers.Dense(2, 2), np.zeros((1, 2)), **kwargs)


class _PairOut(layers.Tanh):
    def forward(self, x):
        y = super().forward(x)
        return y, y


class _Jitter(nn.Module):
    """``x**2 + noise``, the noise drawn from the global generator at every forward."""

    def forward(self, x):
        return x ** 2 + nn.get_rng().standard_normal(x.shape)

    def backward(self, dy):
        return 2 * dy                     # d(x^2)/dx at x = 1


@pytest.mark.parametrize("check", [nn.gradcheck, nn.check_intermediates])
def test_a_forward_returning_several_arrays_is_named(check):
    with pytest.raises(TypeError, match=r"_PairOut.forward must return one floating-point array "
                                        r"\(the function checked is sum\(forward\(x\) \* G\)\), got tuple"):
        check(_PairOut(), np.ones((2, 3)))


@pytest.mark.parametrize("check", [nn.gradcheck, nn.check_intermediates])
def test_a_module_drawing_from_the_global_generator_draws_the_same_at_every_evaluation(check):
    nn.seed(3)
    before = nn.get_rng().bit_generator.state
    report = check(_Jitter(), np.ones((2, 3)))
    assert report.passed
    assert nn.get_rng().bit_generator.state == before          # left as it was found


class _Gate(nn.Module):
    """``y = x * sigmoid(x2 @ W.T)``: a second input taken by keyword, its gradient reported."""

    def __init__(self, wrong=False):
        super().__init__()
        self.weight = nn.Parameter(np.random.default_rng(0).standard_normal((3, 2)))
        self.wrong = wrong

    def forward(self, x, x2):
        self._x, self._x2 = x, x2
        self._s = 1 / (1 + np.exp(-(x2 @ self.weight.data.T)))
        return x * self._s

    def backward(self, dy):
        da = dy * self._x * self._s * (1 - self._s)
        self.weight.grad += da.T @ self._x2
        self.dx2 = da @ self.weight.data * (1.1 if self.wrong else 1.0)
        return dy * self._s

    def input_gradients(self):
        return {"x2": self.dx2}


@pytest.mark.parametrize("check", [nn.gradcheck, nn.check_intermediates])
def test_a_second_input_by_keyword_is_checked_through_input_gradients(check):
    rng = np.random.default_rng(1)
    x, x2 = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    right = check(_Gate(), x, forward_kwargs={"x2": x2})
    wrong = check(_Gate(wrong=True), x, forward_kwargs={"x2": x2})
    assert right.passed and "x2" in str(right)
    assert not wrong.passed and not wrong["x2"].passed and wrong["input"].passed and wrong["weight"].passed


def test_the_global_generator_is_rewound_only_for_a_module_that_draws_from_it():
    from nn.gradcheck import replayed
    x = np.ones((2, 3))
    for module, draws in ((layers.Tanh(), False), (_Jitter(), True)):
        start = nn.get_rng().bit_generator.state
        with replayed(module) as rewind:
            rewind()
            module(x)
            rewind()                                        # after the first forward: decided
            nn.get_rng().random()                           # a draw of some other code
            rewind()
        moved = nn.get_rng().bit_generator.state != start
        assert moved is not draws                          # replayed only when the module draws
