"""Tests for optim: optimizers, schedulers, gradient clipping.

The PyTorch comparisons import torch inside each test (skipped when it is missing); every other
test runs with NumPy alone.
"""
import io
import math

import numpy as np
import pytest

import nn
import optim
from nn.parameter import Parameter

SHAPES = [(3, 4), (5,), (2, 3, 2)]

# (our class, keyword arguments) -- the same keywords construct the torch.optim class of the same name
CONFIGS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.8, dampening=0.3, weight_decay=0.1)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    ("Adam", dict(lr=0.02, amsgrad=True, weight_decay=0.05)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.02, betas=(0.5, 0.9), weight_decay=0.3, amsgrad=True)),
    ("RMSprop", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, alpha=0.9, momentum=0.7)),
    ("RMSprop", dict(lr=0.005, centered=True, weight_decay=0.1)),
    ("RMSprop", dict(lr=0.005, alpha=0.95, eps=1e-4, momentum=0.5, centered=True, weight_decay=0.02)),
    ("Adagrad", dict(lr=0.1)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.05, weight_decay=0.1, eps=1e-6)),
    ("Adagrad", dict(lr=0.1, initial_accumulator_value=0.5)),
]
CONFIG_IDS = [f"{name}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for name, kw in CONFIGS]


def make_params(dtype=np.float64, seed=0, shapes=SHAPES):
    rng = np.random.default_rng(seed)
    return [Parameter(rng.standard_normal(s).astype(dtype), name=f"p{i}") for i, s in enumerate(shapes)]


def grad_sequence(params, steps, seed=1):
    """steps lists of gradients, one per parameter, in each parameter's dtype."""
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal(p.shape).astype(p.dtype) for p in params] for _ in range(steps)]


def run(opt, params, grads):
    for gs in grads:
        for p, g in zip(params, gs):
            p.grad[...] = g
        opt.step()


def clone(params):
    return [Parameter(p.data.copy(), name=p.name) for p in params]


# ------------------------------------------------------------------------------------------
# equality with torch.optim


def run_torch(torch, name, kwargs, params, grads, lr_at=None):
    ts = [torch.tensor(p.data.copy(), requires_grad=True) for p in params]
    topt = getattr(torch.optim, name)(ts, foreach=False, **kwargs)
    for k, gs in enumerate(grads):
        if lr_at is not None and k in lr_at:
            for group in topt.param_groups:
                group["lr"] = lr_at[k]
        for t, g in zip(ts, gs):
            t.grad = torch.tensor(g.copy())
        topt.step()
    return ts, topt


@pytest.mark.parametrize("name,kwargs", CONFIGS, ids=CONFIG_IDS)
def test_matches_torch_float64(name, kwargs):
    torch = pytest.importorskip("torch")
    params = make_params(np.float64)
    grads = grad_sequence(params, steps=7)
    lr_at = {4: kwargs["lr"] * 0.5}        # a learning-rate change mid-run, as a scheduler makes
    ts, topt = run_torch(torch, name, kwargs, params, grads, lr_at=lr_at)

    opt = getattr(optim, name)(params, **kwargs)
    for k, gs in enumerate(grads):
        if k in lr_at:
            opt.lr = lr_at[k]
        for p, g in zip(params, gs):
            p.grad[...] = g
        opt.step()

    for p, t in zip(params, ts):
        np.testing.assert_allclose(p.data, t.detach().numpy(), rtol=1e-12, atol=1e-14)
    # The state carries PyTorch's buffer names and values.
    for p, t, st in zip(params, ts, opt.state):
        tstate = topt.state[t]
        for key, value in st.items():
            if key == "step":
                if "step" in tstate:
                    assert value == int(tstate["step"])
                continue
            np.testing.assert_allclose(value, tstate[key].numpy(), rtol=1e-12, atol=1e-14, err_msg=key)


@pytest.mark.parametrize("name,kwargs", [CONFIGS[i] for i in (2, 6, 8, 12, 14)],
                         ids=[CONFIG_IDS[i] for i in (2, 6, 8, 12, 14)])
def test_matches_torch_float32(name, kwargs):
    torch = pytest.importorskip("torch")
    params = make_params(np.float32)
    grads = grad_sequence(params, steps=6)
    ts, _ = run_torch(torch, name, kwargs, params, grads)
    opt = getattr(optim, name)(params, **kwargs)
    run(opt, params, grads)
    for p, t in zip(params, ts):
        assert p.data.dtype == np.float32
        np.testing.assert_allclose(p.data, t.detach().numpy(), rtol=1e-5, atol=1e-6)


ADAM_CONFIGS = [(name, kw) for name, kw in CONFIGS if name.startswith("Adam")]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,kwargs", ADAM_CONFIGS, ids=[f"{n}-{kw}" for n, kw in ADAM_CONFIGS])
def test_adam_fused_kernel_equals_reference(name, kwargs, dtype):
    # The numba kernel performs the reference's operations in the same order and precision,
    # so the two agree to the last bit, state included.
    params = make_params(dtype)
    twins = clone(params)
    grads = grad_sequence(params, steps=5)
    fast, ref = getattr(optim, name)(params, **kwargs), getattr(optim, name)(twins, **kwargs)
    run(fast, params, grads)
    with nn.use_reference():
        run(ref, twins, grads)
    for p, q in zip(params, twins):
        np.testing.assert_array_equal(p.data, q.data)
    for a, b in zip(fast.state, ref.state):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_amsgrad_keeps_a_nan_in_its_running_maximum_on_both_paths():
    states = []
    for reference in (False, True):
        p = Parameter(np.array([1.0, 2.0]))
        opt = optim.Adam([p], lr=0.1, amsgrad=True)
        for g in ([1.0, 1.0], [np.nan, 1.0], [1.0, 1.0]):
            p.grad = np.array(g)
            with nn.use_reference(reference):
                opt.step()
        states.append(opt.state[0]["max_exp_avg_sq"])
    assert np.isnan(states[0][0]) and np.isnan(states[1][0])     # as np.maximum and torch.maximum
    np.testing.assert_array_equal(states[0], states[1])


@pytest.mark.parametrize("name,kwargs", [("Adam", {}), ("AdamW", {"weight_decay": 0.0})])
def test_adam_without_decay_leaves_an_infinite_weight_infinite(name, kwargs):
    # Without weight decay the weight never multiplies anything: inf - finite step stays inf
    # (as in torch.optim), in the fused kernel as in the reference.
    results = []
    for reference in (False, True):
        p = make_params(shapes=[(8,)])
        p[0].data[3] = np.inf
        opt = getattr(optim, name)(p, lr=0.1, **kwargs)
        p[0].grad = np.linspace(-1, 1, 8)
        with nn.use_reference(reference):
            opt.step()
        results.append(p[0].data)
    fast, ref = results
    np.testing.assert_array_equal(fast, ref)
    assert fast[3] == np.inf and np.isfinite(np.delete(fast, 3)).all()


@pytest.mark.parametrize("name,kwargs", [("Adam", {}), ("AdamW", {}), ("RMSprop", {"centered": True, "momentum": 0.5})])
@pytest.mark.parametrize("reference", [False, True])
def test_a_huge_float32_gradient_does_not_freeze_the_weight(name, kwargs, reference):
    """(1 - b2) g^2 is representable for |g| up to about 5.8e20 in float32, g^2 only up to
    1.8e19: an infinite second moment would make every later step zero."""
    torch = pytest.importorskip("torch")
    p, t = nn.Parameter(np.array([1.0], np.float32)), torch.nn.Parameter(torch.tensor([1.0]))
    opt, topt = getattr(optim, name)([p], lr=0.1, **kwargs), getattr(torch.optim, name)([t], lr=0.1, **kwargs)
    for g in [3e19] + [1.0] * 20:
        p.grad, t.grad = np.array([g], np.float32), torch.tensor([g])
        with nn.use_reference(reference):
            opt.step()
        topt.step()
    assert np.isfinite(p.data).all() and p.data[0] != 1.0
    np.testing.assert_allclose(p.data, t.detach().numpy(), rtol=1e-5)


@pytest.mark.filterwarnings("ignore:overflow encountered in multiply")     # g**2, as meant
@pytest.mark.filterwarnings("ignore:invalid value encountered")            # the NaN entry's
@pytest.mark.parametrize("g, other", [(1e22, 1.0), (1e30, 1.0), (1e22, np.nan)])
def test_centered_rmsprop_with_an_overflowing_second_moment_matches_torch(g, other):
    """Past |g| ~ 2e20 both v and gm^2 overflow float32; torch's fused v - gm^2 gives
    sqrt(inf) = inf and a zero step where inf - inf would write NaN into the weight (also
    beside a NaN gradient, which stays in its own entry)."""
    torch = pytest.importorskip("torch")
    x0 = np.array([1.0, -2.0, 0.5], np.float32)
    grad = np.array([g, -g, other], np.float32)
    p, t = nn.Parameter(x0.copy()), torch.nn.Parameter(torch.tensor(x0))
    opt = optim.RMSprop([p], lr=1e-2, centered=True, momentum=0.5)
    topt = torch.optim.RMSprop([t], lr=1e-2, centered=True, momentum=0.5)
    for _ in range(3):
        p.grad, t.grad = grad.copy(), torch.tensor(grad)
        opt.step()
        topt.step()
    np.testing.assert_array_equal(p.data, t.detach().numpy())
    assert (p.data[:2] == x0[:2]).all() and np.isfinite(p.data[2]) == np.isfinite(other)


def test_adam_non_contiguous_gradient_takes_the_reference_path():
    # A gradient assigned by hand may be a strided view; the flat kernel cannot take it.
    p, twin = make_params(shapes=[(4, 3)]), make_params(shapes=[(4, 3)])
    opt, opt_twin = optim.Adam(p, lr=0.1), optim.Adam(twin, lr=0.1)
    for g in np.random.default_rng(1).standard_normal((3, 3, 4)):
        p[0].grad, twin[0].grad = g.T, np.ascontiguousarray(g.T)
        assert not p[0].grad.flags.c_contiguous
        opt.step()
        opt_twin.step()
    np.testing.assert_allclose(p[0].data, twin[0].data, rtol=1e-15)


@pytest.mark.parametrize("norm_type", [2.0, math.inf, "inf", 1.0])
@pytest.mark.parametrize("max_norm", [0.5, 1e3, math.inf])        # clips / leaves alone / measures
def test_clip_grad_norm_matches_torch(norm_type, max_norm):
    torch = pytest.importorskip("torch")
    params = make_params(np.float64)
    for p, g in zip(params, grad_sequence(params, steps=1)[0]):
        p.grad[...] = 3 * g
    ts = [torch.tensor(p.data.copy(), requires_grad=True) for p in params]
    for t, p in zip(ts, params):
        t.grad = torch.tensor(p.grad.copy())

    expected = torch.nn.utils.clip_grad_norm_(ts, max_norm, norm_type=norm_type)
    total = optim.clip_grad_norm(params, max_norm, norm_type=norm_type)

    assert isinstance(total, float)
    assert total == pytest.approx(float(expected), rel=1e-12)
    for p, t in zip(params, ts):
        np.testing.assert_allclose(p.grad, t.grad.numpy(), rtol=1e-12, atol=0)
    if max_norm < 1:
        assert total > max_norm      # the clipping branch did run


@pytest.mark.parametrize("clip_value", [0.7, math.inf])
def test_clip_grad_value_matches_torch(clip_value):
    torch = pytest.importorskip("torch")
    params = make_params(np.float64)
    for p, g in zip(params, grad_sequence(params, steps=1)[0]):
        p.grad[...] = g
    ts = [torch.tensor(p.data.copy(), requires_grad=True) for p in params]
    for t, p in zip(ts, params):
        t.grad = torch.tensor(p.grad.copy())
    torch.nn.utils.clip_grad_value_(ts, clip_value)
    optim.clip_grad_value(params, clip_value)
    for p, t in zip(params, ts):
        np.testing.assert_array_equal(p.grad, t.grad.numpy())


@pytest.mark.parametrize("make", [
    lambda o, L: (o.StepLR(L, step_size=7, gamma=0.5)),
    lambda o, L: (o.StepLR(L, step_size=3)),
    lambda o, L: (o.CosineAnnealingLR(L, T_max=30)),
    lambda o, L: (o.CosineAnnealingLR(L, T_max=10, eta_min=0.01)),     # descends, rises, descends
    lambda o, L: (o.CosineAnnealingLR(L, T_max=7, eta_min=0.002)),
], ids=["step7-0.5", "step3", "cos30", "cos10-min", "cos7-min"])
@pytest.mark.parametrize("poke", [False, True], ids=["", "lr-set-by-hand"])
def test_schedulers_match_torch(make, poke):
    # With poke, the rate is also changed by hand mid-schedule: the recursive update carries it on.
    torch = pytest.importorskip("torch")
    t = torch.zeros(2, requires_grad=True)
    topt = torch.optim.SGD([t], lr=0.1)
    tsched = make(torch.optim.lr_scheduler, topt)
    opt = optim.SGD(make_params(), lr=0.1)
    sched = make(optim, opt)

    assert sched.get_last_lr() == tsched.get_last_lr()
    for epoch in range(30):
        if poke and epoch == 12:
            opt.lr = topt.param_groups[0]["lr"] = 3 * opt.lr
        t.grad = torch.zeros(2)
        topt.step()
        tsched.step()
        sched.step()
        assert sched.last_epoch == tsched.last_epoch == epoch + 1
        assert sched.get_last_lr()[0] == pytest.approx(tsched.get_last_lr()[0], rel=1e-15, abs=1e-18)
        assert opt.lr == sched.get_last_lr()[0]


# ------------------------------------------------------------------------------------------
# hand-computed values (no torch needed)


def single(x, g):
    p = Parameter(np.array(x, dtype=np.float64))
    p.grad[...] = g
    return p


def test_sgd_hand_computed():
    p = single([1.0, -2.0, 0.5], [0.5, -1.0, 2.0])
    optim.SGD([p], lr=0.1).step()
    np.testing.assert_allclose(p.data, [0.95, -1.9, 0.3], rtol=1e-15)

    # weight decay: g' = g + 0.2 x
    p = single([1.0, -2.0], [0.5, -1.0])
    optim.SGD([p], lr=0.1, weight_decay=0.2).step()
    np.testing.assert_allclose(p.data, [1.0 - 0.1 * 0.7, -2.0 - 0.1 * (-1.4)], rtol=1e-15)

    # momentum: b1 = g1, b2 = 0.9 b1 + g2; Nesterov steps with g + 0.9 b
    p = single([1.0], [1.0])
    q = single([1.0], [1.0])
    opt = optim.SGD([p], lr=0.1, momentum=0.9)
    nes = optim.SGD([q], lr=0.1, momentum=0.9, nesterov=True)
    opt.step()
    nes.step()
    np.testing.assert_allclose(p.data, [0.9], rtol=1e-15)
    np.testing.assert_allclose(q.data, [1.0 - 0.1 * 1.9], rtol=1e-15)
    p.grad[...] = 2.0
    q.grad[...] = 2.0
    opt.step()
    nes.step()
    np.testing.assert_allclose(p.data, [0.9 - 0.1 * 2.9], rtol=1e-15)
    np.testing.assert_allclose(q.data, [0.81 - 0.1 * (2.0 + 0.9 * 2.9)], rtol=1e-15)


def test_adam_hand_computed():
    # One step: m_hat = g, v_hat = g^2, so x <- x - lr g / (|g| + eps).
    x, g = np.array([1.0, -2.0, 0.5]), np.array([0.5, -1.0, 2e-8])
    p = single(x, g)
    optim.Adam([p], lr=0.1).step()
    np.testing.assert_allclose(p.data, x - 0.1 * g / (np.abs(g) + 1e-8), rtol=1e-13)

    # A constant gradient keeps m_hat = g and v_hat = g^2 at every step.
    p = single(x, g)
    opt = optim.Adam([p], lr=0.1, betas=(0.5, 0.7))
    for _ in range(4):
        opt.step()
    np.testing.assert_allclose(p.data, x - 4 * 0.1 * g / (np.abs(g) + 1e-8), rtol=1e-12)
    assert opt.state[0]["step"] == 4

    # Zero gradient: AdamW only decays, x <- x (1 - lr wd) per step ...
    p = single(x, 0.0)
    opt = optim.AdamW([p], lr=0.1, weight_decay=0.5)
    opt.step()
    opt.step()
    np.testing.assert_allclose(p.data, x * 0.95 ** 2, rtol=1e-15)
    # ... while Adam's L2 decay goes through the moments: g' = wd x, a step of ~lr sign(x).
    p = single(x, 0.0)
    optim.Adam([p], lr=0.1, weight_decay=0.5).step()
    np.testing.assert_allclose(p.data, x - 0.1 * np.sign(x), rtol=1e-7)


def test_rmsprop_adagrad_hand_computed():
    x, g = np.array([1.0, -2.0]), np.array([0.5, -3.0])
    p = single(x, g)
    optim.RMSprop([p], lr=0.01, alpha=0.9).step()
    np.testing.assert_allclose(p.data, x - 0.01 * g / (np.sqrt(0.1) * np.abs(g) + 1e-8), rtol=1e-14)

    p = single(x, g)
    opt = optim.Adagrad([p], lr=0.1, lr_decay=0.5)
    opt.step()
    np.testing.assert_allclose(p.data, x - 0.1 * g / (np.abs(g) + 1e-10), rtol=1e-14)
    opt.step()      # s = 2 g^2, lr_2 = 0.1 / 1.5
    np.testing.assert_allclose(p.data, x - 0.1 * np.sign(g) - (0.1 / 1.5) * np.sign(g) / np.sqrt(2),
                               rtol=1e-9)


def test_clip_hand_computed():
    a, b = Parameter(np.zeros(2)), Parameter(np.zeros((1, 1)))
    a.grad[...] = [3.0, 0.0]
    b.grad[...] = 4.0
    total = optim.clip_grad_norm([a, b], max_norm=1.0)
    assert total == 5.0
    c = 1.0 / (5.0 + 1e-6)
    np.testing.assert_allclose(a.grad, [3 * c, 0.0], rtol=1e-15)
    np.testing.assert_allclose(b.grad, [[4 * c]], rtol=1e-15)
    assert optim.clip_grad_norm([a, b], max_norm=10.0) == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_allclose(b.grad, [[4 * c]], rtol=1e-15)      # below max_norm: unchanged

    a.grad[...] = [-3.0, 0.5]
    assert optim.clip_grad_norm(a, max_norm=1.0, norm_type=math.inf) == 3.0
    np.testing.assert_allclose(a.grad, [-3.0 / (3 + 1e-6), 0.5 / (3 + 1e-6)], rtol=1e-15)
    assert optim.clip_grad_norm([], max_norm=1.0) == 0.0

    a.grad[...] = [-3.0, 0.5]
    optim.clip_grad_value([a, b], 1.0)
    np.testing.assert_array_equal(a.grad, [-1.0, 0.5])

    a.grad[...] = [np.nan, 1.0]
    with pytest.raises(FloatingPointError):
        optim.clip_grad_norm([a], 1.0, error_if_nonfinite=True)
    assert a.grad[1] == 1.0


@pytest.mark.parametrize("clip", [lambda ps: optim.clip_grad_norm(ps, 0.1),
                                  lambda ps: optim.clip_grad_value(ps, 0.1)])
@pytest.mark.parametrize("second_grad, got", [
    (np.ma.masked_array(np.ones((2, 2))), "MaskedArray"),
    (np.ones((2, 2)), "a read-only array")])          # made read-only after it was assigned
def test_clipping_checks_every_gradient_before_changing_any(clip, second_grad, got):
    a, b = Parameter(np.ones((2, 2))), Parameter(np.ones((2, 2)))
    a.grad, b.grad = np.full((2, 2), 5.0), second_grad.copy()
    if got == "a read-only array":
        b.grad.flags.writeable = False
    with pytest.raises(TypeError, match=rf"parameter #1 needs a writable floating-point "
                                        rf"numpy.ndarray gradient to scale in place, got {got}"):
        clip([a, b])
    np.testing.assert_array_equal(a.grad, 5.0)


def test_clip_grad_norm_error_if_nonfinite_is_a_flag():
    a = Parameter(np.ones(2))
    a.grad = np.array([np.inf, 1.0])
    with pytest.raises(TypeError, match="error_if_nonfinite must be True or False, got str 'no'"):
        optim.clip_grad_norm([a], 1.0, error_if_nonfinite="no")
    assert a.grad[1] == 1.0


def test_a_schedule_step_to_a_negative_rate_changes_nothing():
    opt = optim.SGD(make_params(), lr=0.1)
    sched = optim.CosineAnnealingLR(opt, T_max=2, eta_min=0.05)
    for _ in range(3):
        sched.step()
    opt.lr = 0.01                                  # by hand, below eta_min: the recursion goes negative
    with pytest.raises(ValueError, match="CosineAnnealingLR.step: the next rate is invalid .*stays at epoch 3"):
        sched.step()
    assert sched.last_epoch == 3 and opt.lr == 0.01


@pytest.mark.parametrize("T_max, eta_min", [(3, 0.05), (20000, 1.0)])
def test_a_cosine_rising_from_zero_comes_back_to_zero_not_below(T_max, eta_min):
    opt = optim.SGD(make_params(), lr=0.0)
    sched = optim.CosineAnnealingLR(opt, T_max=T_max, eta_min=eta_min)
    rates = []
    for _ in range(4 * T_max):
        sched.step()
        rates.append(opt.lr)
    expected = [eta_min * (1 - math.cos(math.pi * e / T_max)) / 2 for e in range(1, 4 * T_max + 1)]
    np.testing.assert_allclose(rates, expected, rtol=1e-6, atol=1e-7 * eta_min)
    assert min(rates) >= 0    # the recursion alone lands below 0 (-2.8e-17 at epoch 6 of T_max=3)


def test_schedulers_hand_computed():
    opt = optim.SGD(make_params(), lr=1.0)
    sched = optim.StepLR(opt, step_size=2, gamma=0.5)
    lrs = [sched.get_last_lr()[0]]
    for _ in range(6):
        sched.step()
        lrs.append(opt.lr)
    assert lrs == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.125]

    opt = optim.SGD(make_params(), lr=1.0)
    sched = optim.CosineAnnealingLR(opt, T_max=4, eta_min=0.1)
    lrs = [opt.lr]
    for _ in range(8):
        sched.step()
        lrs.append(opt.lr)
    closed = [0.1 + 0.9 * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(9)]
    np.testing.assert_allclose(lrs, closed, rtol=1e-14)
    assert lrs[4] == 0.1

    state = sched.state_dict()
    assert all(isinstance(v, (int, float)) for v in state.values())
    other = optim.CosineAnnealingLR(optim.SGD(make_params(), lr=1.0), T_max=99)
    other.load_state_dict(state)
    other.optimizer.lr = opt.lr
    for _ in range(5):
        sched.step()
        other.step()
        assert other.get_last_lr() == sched.get_last_lr()
    with pytest.raises(ValueError):
        other.load_state_dict({**state, "extra": 1})
    with pytest.raises(ValueError):
        other.load_state_dict({**state, "T_max": 0})
    assert other.T_max == 4


# ------------------------------------------------------------------------------------------
# state_dict


@pytest.mark.parametrize("name,kwargs", CONFIGS, ids=CONFIG_IDS)
def test_state_dict_round_trip_resumes_identically(name, kwargs):
    params = make_params()
    grads = grad_sequence(params, steps=6)
    opt = getattr(optim, name)(params, **kwargs)
    run(opt, params, grads[:3])

    state = opt.state_dict()
    for key, value in state.items():
        assert isinstance(key, str)
        assert isinstance(value, (int, float, np.ndarray)) and not isinstance(value, bool), key
    # Through an .npz file without pickle, as a checkpoint stores it.
    buf = io.BytesIO()
    np.savez(buf, **state)
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as f:
        loaded = {k: f[k] for k in f.files}

    resumed = clone(params)
    opt2 = getattr(optim, name)(resumed, **{**kwargs, "lr": 123.0})
    opt2.load_state_dict(loaded)
    assert opt2.lr == opt.lr
    run(opt, params, grads[3:])
    run(opt2, resumed, grads[3:])
    for p, q in zip(params, resumed):
        np.testing.assert_array_equal(p.data, q.data)


def test_state_dict_is_a_copy():
    params = make_params()
    opt = optim.Adam(params)
    run(opt, params, grad_sequence(params, steps=1))
    state = opt.state_dict()
    before = state["state.0.exp_avg"].copy()
    run(opt, params, grad_sequence(params, steps=1, seed=5))
    np.testing.assert_array_equal(state["state.0.exp_avg"], before)


def snapshot(opt):
    return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in opt.state_dict().items()}


def assert_same_state(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_load_state_dict_rejects_bad_input_and_changes_nothing():
    params = make_params()
    opt = optim.Adam(params, lr=0.01, amsgrad=True)
    run(opt, params, grad_sequence(params, steps=2))
    good = opt.state_dict()
    before = snapshot(opt)

    # The first entries are valid and differ from the current ones, the last one is wrong:
    bad = {k: (v + 1 if isinstance(v, np.ndarray) else v) for k, v in good.items()}
    bad["lr"] = 0.5
    bad["state.2.max_exp_avg_sq"] = np.zeros((2, 3))
    with pytest.raises(ValueError, match="shape"):
        opt.load_state_dict(bad)
    assert_same_state(snapshot(opt), before)
    assert opt.lr == 0.01

    cases = [
        ({k: v for k, v in good.items() if k != "state.1.exp_avg"}, ValueError, "missing"),
        ({**good, "state.3.exp_avg": np.zeros(3)}, ValueError, "unexpected"),
        ({**good, "lr": -1.0}, ValueError, "lr"),
        ({**good, "state.0.step": -2}, ValueError, "step"),
        ({**good, "state.0.step": 1.5}, TypeError, "step"),
        ({**good, "state.0.exp_avg": np.zeros((3, 4), dtype=np.int64)}, TypeError, "floating"),
        ({**good, "state.0.exp_avg": [[0.0] * 4] * 3}, TypeError, "array"),
        ([("lr", 0.1)], TypeError, "dict"),
        ({**good, "state.1.exp_avg_sq": -good["state.1.exp_avg_sq"] - 1}, ValueError,
         r"'state.1.exp_avg_sq' accumulates squared gradients, so holds values >= 0, got -"),
        ({**good, "state.0.max_exp_avg_sq": np.full((3, 4), np.nan)}, ValueError, "values >= 0, got nan"),
    ]
    for state, error, words in cases:
        with pytest.raises(error, match=words):
            opt.load_state_dict(state)
        assert_same_state(snapshot(opt), before)

    # A state from a differently configured optimizer does not fit.
    with pytest.raises(ValueError, match="keys"):
        optim.Adam(params, amsgrad=False).load_state_dict(good)
    with pytest.raises(ValueError, match="keys"):
        optim.Adam(params[:2], amsgrad=True).load_state_dict(good)


# ------------------------------------------------------------------------------------------
# in-place updates, dtypes, bad input


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,kwargs", CONFIGS, ids=CONFIG_IDS)
def test_updates_in_place_keeping_dtype(name, kwargs, dtype):
    params = make_params(dtype)
    arrays = [p.data for p in params]
    grad_arrays = [p.grad for p in params]
    start = [a.copy() for a in arrays]
    opt = getattr(optim, name)(params, **kwargs)
    run(opt, params, grad_sequence(params, steps=3))
    for p, a, g, s in zip(params, arrays, grad_arrays, start):
        assert p.data is a and p.grad is g
        assert p.data.dtype == dtype and p.grad.dtype == dtype
        assert not np.array_equal(p.data, s)
    for st in opt.state:
        assert all(v.dtype == dtype for v in st.values() if isinstance(v, np.ndarray))
    opt.zero_grad()
    assert all(p.grad is g and not p.grad.any() for p, g in zip(params, grad_arrays))


def test_parameter_converted_between_steps():
    params = make_params(np.float64)
    opt = optim.Adam(params, lr=0.01)
    run(opt, params, grad_sequence(params, steps=2))
    for p in params:
        p.astype(np.float32)
    run(opt, params, grad_sequence(params, steps=2, seed=3))
    for p, st in zip(params, opt.state):
        assert p.data.dtype == np.float32
        assert st["exp_avg"].dtype == np.float32 and st["exp_avg_sq"].dtype == np.float32
    assert opt.state_dict()["state.0.exp_avg"].dtype == np.float32


def test_step_checks_every_gradient_before_updating():
    params = make_params()
    opt = optim.SGD(params, lr=0.1)
    start = [p.data.copy() for p in params]
    for p in params:
        p.grad[...] = 1.0
    # a gradient of another shape or dtype, or not an array, is refused as soon as it is set
    for wrong in (np.ones(7), np.ones(params[2].shape, dtype=np.float32)):
        with pytest.raises(ValueError, match=r"Parameter 'p2': expected grad of the data's shape \(2, 3, 2\) "
                                             r"and dtype float64"):
            params[2].grad = wrong
    with pytest.raises(TypeError, match="Parameter 'p2': expected grad to be a numpy array or None, got list"):
        params[2].grad = params[2].data.tolist()
    saved, params[0].grad = params[0].grad, np.ma.masked_array(np.ones(params[0].shape))
    with pytest.raises(TypeError, match=r"parameter #0 \('p0'\) has a gradient of type "
                                        r"MaskedArray; expected a numpy.ndarray"):
        opt.step()
    params[0].grad = saved
    params[2].data.setflags(write=False)
    with pytest.raises(ValueError, match=r"parameter #2 \('p2'\) has read-only data"):
        opt.step()
    params[2].data.setflags(write=True)
    for p, s in zip(params, start):
        np.testing.assert_array_equal(p.data, s)
    assert [st["step"] for st in opt.state] == [0, 0, 0]

    params[2].grad = None             # skipped, as in PyTorch
    opt.step()
    np.testing.assert_array_equal(params[2].data, start[2])
    np.testing.assert_allclose(params[0].data, start[0] - 0.1, rtol=1e-15)
    assert [st["step"] for st in opt.state] == [1, 1, 0]


def test_params_argument_errors():
    params = make_params()
    with pytest.raises(TypeError, match="params\\[1\\] must be a Parameter, got ndarray"):
        optim.SGD([params[0], np.zeros(3)], lr=0.1)
    with pytest.raises(TypeError, match="named_parameters"):
        optim.SGD([("w", params[0])], lr=0.1)
    with pytest.raises(TypeError, match="single Parameter"):
        optim.Adam(params[0])
    with pytest.raises(TypeError, match="ndarray"):
        optim.Adam(np.zeros((2, 2)))
    with pytest.raises(TypeError, match="int"):
        optim.Adam(3)
    with pytest.raises(ValueError, match="empty"):
        optim.Adam([])
    with pytest.raises(ValueError, match="empty"):
        optim.Adam(p for p in [])
    with pytest.raises(ValueError, match="listed once"):
        optim.Adam([params[0], params[1], params[0]])
    twin = Parameter(np.zeros(2))
    twin.data = params[1].data
    with pytest.raises(ValueError, match="same memory"):
        optim.Adam([params[1], twin])
    for view in (params[1].data.reshape(-1), params[1].data[:1]):     # views of one array
        with pytest.raises(ValueError, match=r"params\[1\] \(''\) and params\[0\] \('p1'\) hold the same memory"):
            optim.SGD([params[1], Parameter(view)], lr=0.1)

    opt = optim.Adam(p for p in params)          # a generator is consumed once into a list
    assert opt.params == params
    assert optim.Adam(params).params is not params


@pytest.mark.parametrize("make,error,words", [
    (lambda ps: optim.SGD(ps, lr=-0.1), ValueError, "lr must be >= 0"),
    (lambda ps: optim.SGD(ps, lr=float("nan")), ValueError, "finite"),
    (lambda ps: optim.SGD(ps, lr="0.1"), TypeError, "lr must be a real number"),
    (lambda ps: optim.SGD(ps, lr=0.1, momentum=-0.5), ValueError, "momentum"),
    (lambda ps: optim.SGD(ps, lr=0.1, nesterov=True), ValueError, "nesterov"),
    (lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, dampening=0.1), ValueError, "dampening"),
    (lambda ps: optim.SGD(ps, lr=0.1, dampening=1.5), ValueError, "dampening"),
    (lambda ps: optim.Adam(ps, betas=(1.0, 0.999)), ValueError, r"betas\[0\] must be in \[0, 1\)"),
    (lambda ps: optim.Adam(ps, betas=(0.9, -0.1)), ValueError, r"betas\[1\]"),
    (lambda ps: optim.AdamW(ps, betas=(0.9, 1.5)), ValueError, r"AdamW: betas\[1\]"),
    (lambda ps: optim.Adam(ps, betas=(0.9,)), TypeError, "pair"),
    (lambda ps: optim.Adam(ps, betas=0.9), TypeError, "pair"),
    (lambda ps: optim.Adam(ps, eps=-1e-8), ValueError, "eps"),
    (lambda ps: optim.Adam(ps, weight_decay=-1), ValueError, "weight_decay"),
    (lambda ps: optim.Adam(ps, amsgrad="yes"), TypeError, "amsgrad"),
    (lambda ps: optim.RMSprop(ps, alpha=-0.1), ValueError, "alpha"),
    (lambda ps: optim.RMSprop(ps, alpha=1.5), ValueError, r"alpha must be in \[0, 1\], got 1.5"),
    (lambda ps: optim.Adagrad(ps, lr_decay=-1), ValueError, "lr_decay"),
    (lambda ps: optim.StepLR(optim.SGD(ps, lr=0.1), step_size=0), ValueError, "step_size"),
    (lambda ps: optim.StepLR(optim.SGD(ps, lr=0.1), step_size=2.5), TypeError, "step_size"),
    (lambda ps: optim.CosineAnnealingLR(optim.SGD(ps, lr=0.1), T_max=0), ValueError, "T_max"),
    (lambda ps: optim.CosineAnnealingLR(ps, T_max=3), TypeError, "Optimizer"),
    (lambda ps: optim.clip_grad_norm(ps, max_norm=-1), ValueError, "max_norm"),
    (lambda ps: optim.clip_grad_norm(ps, max_norm=1, norm_type=0), ValueError, "norm_type"),
    (lambda ps: optim.clip_grad_value(ps, -1), ValueError, "clip_value"),
    (lambda ps: optim.clip_grad_value([np.zeros(2)], 1), TypeError, "Parameter"),
])
def test_hyperparameter_errors(make, error, words):
    with pytest.raises(error, match=words):
        make(make_params())


def test_lr_is_settable_other_hyperparameters_are_not():
    params = make_params()
    opt = optim.SGD(params, lr=0.1, momentum=0.9)
    opt.lr = np.float32(0.25)
    assert opt.lr == 0.25 and type(opt.lr) is float
    with pytest.raises(ValueError, match="lr"):
        opt.lr = -1.0
    assert opt.lr == 0.25
    with pytest.raises(AttributeError, match="only lr"):
        opt.momentum = 0.5
    assert opt.momentum == 0.9
    assert "SGD(lr=0.25, momentum=0.9" in repr(opt)


def test_float32_arithmetic_stays_float32():
    # Python-float hyperparameters must not promote the float32 arithmetic to float64:
    # one float32 step equals the same formula evaluated in float32.
    x = np.array([0.1, -0.7, 3.0], dtype=np.float32)
    g = np.array([0.3, 0.2, -1.1], dtype=np.float32)
    p = Parameter(x.copy())
    p.grad[...] = g
    optim.SGD([p], lr=0.1).step()
    np.testing.assert_array_equal(p.data, x - np.float32(0.1) * g)


def test_track_updates_records_update_to_weight_ratio():
    p = Parameter(np.full(4, 2.0))
    opt = optim.SGD([p], lr=0.1)
    p.grad[:] = 1.0
    opt.step()
    assert opt.update_ratios == {}                      # off by default: no copies made
    opt.track_updates = True
    opt.step()
    np.testing.assert_allclose(opt.update_ratios[id(p)], 0.1 * 2 / np.linalg.norm(np.full(4, 1.9)))


class TwoHeads(nn.Module):
    """A shared trunk and two heads; each step trains one head, so the other gets no gradient."""

    def __init__(self):
        super().__init__()
        import layers
        self.trunk = layers.Dense(3, 4, dtype=np.float64)
        self.heads = nn.ModuleList([layers.Dense(4, 2, dtype=np.float64) for _ in range(2)])

    def forward(self, x, head):
        self._head = self.heads[head]
        return self._head(self.trunk(x))

    def backward(self, dy):
        return self.trunk.backward(self._head.backward(dy))


@pytest.mark.parametrize("zero_grad_on", ["model", "optimizer"])
def test_set_to_none_leaves_a_parameter_without_gradient_alone_as_torch(zero_grad_on):
    torch = pytest.importorskip("torch")
    model = TwoHeads()
    reference = torch.nn.ModuleDict({"trunk": torch.nn.Linear(3, 4),
                                     "heads": torch.nn.ModuleList([torch.nn.Linear(4, 2) for _ in range(2)])}).double()
    model.load_state_dict(reference.state_dict())
    opt = optim.AdamW(model.parameters(), lr=0.1, weight_decay=0.1)
    torch_opt = torch.optim.AdamW(reference.parameters(), lr=0.1, weight_decay=0.1)
    rng = np.random.default_rng(0)
    for head in (0, 1, 0, 0, 1):            # head 1 sits out steps 3 and 4, after moving once
        x, dy = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
        (model if zero_grad_on == "model" else opt).zero_grad(set_to_none=True)
        model(x, head)
        model.backward(dy)
        if head == 0:
            assert all(p.grad is None for p in model.heads[1].parameters())
        opt.step()
        torch_opt.zero_grad()
        y = reference["heads"][head](reference["trunk"](torch.from_numpy(x)))
        y.backward(torch.from_numpy(dy))
        torch_opt.step()
    for name, value in reference.state_dict().items():
        np.testing.assert_allclose(model.state_dict()[name], value.numpy(), rtol=1e-12, atol=1e-14, err_msg=name)


def test_zeroed_gradients_still_move_a_parameter_under_momentum():
    """The default keeps zero arrays: a parameter that took no part in a step still moves (its
    momentum and weight decay act), as in PyTorch with ``zero_grad(set_to_none=False)``."""
    p = Parameter(np.ones(2))
    opt = optim.SGD([p], lr=0.1, momentum=0.9)
    p.grad[:] = 1.0
    opt.step()
    after_one = p.data.copy()
    opt.zero_grad()
    opt.step()
    assert np.all(p.data < after_one)
    opt.zero_grad(set_to_none=True)
    before = p.data.copy()
    opt.step()
    np.testing.assert_array_equal(p.data, before)
    with pytest.raises(TypeError, match="SGD.zero_grad: set_to_none must be True or False, got str 'yes'"):
        opt.zero_grad(set_to_none="yes")


def test_a_frozen_trunk_stays_put_while_the_rest_trains_as_in_torch():
    torch = pytest.importorskip("torch")
    import layers
    model = nn.Sequential(layers.Dense(4, 5, dtype=np.float64), layers.Tanh(),
                          layers.Dense(5, 3, dtype=np.float64))
    reference = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3)).double()
    reference.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    assert model[0].requires_grad_(False) is model[0]
    reference[0].requires_grad_(False)
    frozen = model[0].weight.data.copy()
    opt = optim.AdamW(model.parameters(), lr=0.1, weight_decay=0.1)
    topt = torch.optim.AdamW(reference.parameters(), lr=0.1, weight_decay=0.1)
    rng = np.random.default_rng(0)
    for _ in range(3):
        x, dy = rng.standard_normal((6, 4)), rng.standard_normal((6, 3))
        model.zero_grad()
        model(x)
        model.backward(dy)
        topt.zero_grad()
        reference(torch.from_numpy(x)).backward(torch.from_numpy(dy))
        norm = optim.clip_grad_norm(model.parameters(), 0.5)
        assert norm == pytest.approx(float(torch.nn.utils.clip_grad_norm_(reference.parameters(), 0.5)))
        opt.step()
        topt.step()
    np.testing.assert_array_equal(model[0].weight.data, frozen)
    for name, value in reference.state_dict().items():
        np.testing.assert_allclose(model.state_dict()[name], value.numpy(), rtol=1e-12, err_msg=name)
    assert opt.state[0]["step"] == 0 and opt.state[2]["step"] == 3


def test_requires_grad_is_a_flag_kept_by_copies():
    import copy
    import layers
    p = nn.Parameter(np.zeros(2), requires_grad=False)
    assert "requires_grad=False" in repr(p) and not copy.deepcopy(p).requires_grad
    assert not p.astype(np.float32).requires_grad
    with pytest.raises(TypeError, match="Parameter '': expected requires_grad to be True or False, got 0"):
        p.requires_grad = 0
    model = nn.Sequential(layers.Dense(3, 4), layers.Dense(4, 2))
    model[0].requires_grad_(False)
    text = nn.summary(model, (3,), print_fn=None)
    assert "Total params: 26\nTrainable params: 10\nNon-trainable params: 16" in text
    assert "Trainable" not in nn.summary(model.requires_grad_(), (3,), print_fn=None)


def test_a_parameter_pickled_before_the_flag_counts_as_trainable():
    p = nn.Parameter(np.ones(2))
    make, args, (_, slots) = p.__reduce_ex__(4)[:3]
    old = make(*args)
    for name, value in slots.items():
        if name != "_requires_grad":                       # what such a pickle holds
            setattr(old, name, value)
    assert old.requires_grad
    optim.SGD([old], lr=0.5).step()
    np.testing.assert_array_equal(old.data, [1.0, 1.0])    # a zero gradient: stepped, unchanged
    old.grad[...] = 1.0
    optim.SGD([old], lr=0.5).step()
    np.testing.assert_array_equal(old.data, [0.5, 0.5])
