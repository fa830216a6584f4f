"""Losses: finite differences, PyTorch equality, stability, bad input."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import nn


def fd_check(loss, pred, target, eps=1e-6):
    """Central differences of the scalar loss w.r.t. every element of pred."""
    loss(pred, target)
    analytic = loss.backward()
    f = lambda: loss(pred, target)
    idx = list(np.ndindex(pred.shape))
    numeric = nn.numerical_gradient(f, pred, idx, eps)
    np.testing.assert_allclose([analytic[i] for i in idx], numeric, rtol=1e-5, atol=1e-8)


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 5), st.integers(2, 6), st.sampled_from([0.0, 0.1]), st.booleans(),
       st.sampled_from(["mean", "sum"]))
def test_cross_entropy_gradcheck(N, C, smoothing, seq, reduction):
    rng = np.random.default_rng(N * 10 + C)
    shape = (N, 3, C) if seq else (N, C)
    z = rng.standard_normal(shape)
    y = rng.integers(0, C, shape[:-1])
    if y.size > 1:
        y.flat[0] = -100                               # one ignored position (all: see below)
    fd_check(nn.CrossEntropyLoss(reduction=reduction, label_smoothing=smoothing), z, y)


def test_mse_and_bce_gradcheck():
    rng = np.random.default_rng(1)
    fd_check(nn.MSELoss(), rng.standard_normal((4, 3)), rng.standard_normal((4, 3)))
    fd_check(nn.MSELoss(reduction="sum"), rng.standard_normal((5,)), rng.standard_normal((5,)))
    t = rng.integers(0, 2, (4, 3)).astype(float)
    fd_check(nn.BCEWithLogitsLoss(), rng.standard_normal((4, 3)) * 3, t)
    fd_check(nn.BCEWithLogitsLoss(pos_weight=np.array([0.5, 2.0, 3.0])), rng.standard_normal((4, 3)), t)


def test_reduction_none_takes_upstream():
    rng = np.random.default_rng(2)
    z, y = rng.standard_normal((4, 5)), rng.integers(0, 5, 4)
    loss = nn.CrossEntropyLoss(reduction="none")
    per = loss(z, y)
    assert per.shape == (4,)
    g = rng.standard_normal(4)
    dz = loss.backward(g)
    full = nn.CrossEntropyLoss(reduction="sum")
    full(z, y)
    np.testing.assert_allclose(dz, full.backward() * g[:, None])


@pytest.mark.parametrize("make", [nn.MSELoss, nn.BCEWithLogitsLoss])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_a_scalar_upstream_scales_the_gradient(make, reduction):
    rng = np.random.default_rng(3)
    pred, target = rng.standard_normal((4, 3)), rng.integers(0, 2, (4, 3)).astype(float)
    loss = make(reduction=reduction)
    loss(pred, target)
    np.testing.assert_allclose(loss.backward(np.float64(-2.5)), -2.5 * loss.backward(), rtol=1e-15)
    with pytest.raises(ValueError, match=rf"{make.__name__}.backward: expected dloss of shape \(\), "
                                         rf"as the {reduction} \(a scalar\), got \(4, 3\)"):
        loss.backward(np.ones((4, 3)))


def test_dlogits_is_p_minus_y():
    z = np.array([[1.0, 2.0, 3.0]])
    loss = nn.CrossEntropyLoss()
    loss(z, np.array([0]))
    p = np.exp(z) / np.exp(z).sum()
    np.testing.assert_allclose(loss.backward(), p - [1, 0, 0])


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_all_targets_ignored(reduction, smoothing):
    # As PyTorch: the mean over no targets is nan, but nothing flows back -- a batch of pure
    # padding must not turn the weights into nan.
    ce = nn.CrossEntropyLoss(reduction=reduction, label_smoothing=smoothing)
    loss = ce(np.random.default_rng(0).standard_normal((3, 4)), np.full(3, -100))
    assert np.isnan(loss) if reduction == "mean" else np.all(loss == 0)
    np.testing.assert_array_equal(ce.backward(), np.zeros((3, 4)))


def test_stable_for_huge_logits():
    z = np.array([[1e4, -1e4, 0.0]], np.float32)
    ce = nn.CrossEntropyLoss()
    assert np.isfinite(ce(z, np.array([1]))) and np.isfinite(ce.backward()).all()
    bce = nn.BCEWithLogitsLoss()
    x = np.array([1e4, -1e4, 50.0, -50.0], np.float32)
    val = bce(x, np.array([0.0, 1.0, 1.0, 0.0]))
    assert np.isclose(val, (1e4 + 1e4) / 4, rtol=1e-6)
    assert np.isfinite(bce.backward()).all()


@pytest.mark.parametrize("seq", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("targets", ["labels", "probabilities"])
def test_cross_entropy_matches_torch(seq, smoothing, reduction, targets):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    shape = (6, 4, 7) if seq else (6, 7)
    z = rng.standard_normal(shape)
    if targets == "labels":
        y = rng.integers(0, 7, shape[:-1])
        y.flat[[1, 4]] = -100
    else:
        y = rng.dirichlet(np.ones(7), size=shape[:-1])
        y[0] *= 0.5                                      # a row that does not sum to 1 counts too
    ours = nn.CrossEntropyLoss(reduction=reduction, label_smoothing=smoothing)
    out = ours(z, y)
    zt = torch.tensor(z, requires_grad=True)
    classes_second = (lambda t: t.movedim(-1, 1)) if seq else (lambda t: t)
    theirs = torch.nn.CrossEntropyLoss(reduction=reduction, label_smoothing=smoothing)(
        classes_second(zt), torch.tensor(y) if targets == "labels" else classes_second(torch.tensor(y)))
    np.testing.assert_allclose(out, theirs.detach().numpy(), rtol=1e-12)
    g = rng.standard_normal(shape[:-1]) if reduction == "none" else None
    theirs.backward(torch.tensor(g) if g is not None else None)
    np.testing.assert_allclose(ours.backward(g), zt.grad.numpy(), rtol=1e-10, atol=1e-14)


def test_cross_entropy_on_probabilities_gradcheck_and_one_hot():
    rng = np.random.default_rng(6)
    z, y = rng.standard_normal((5, 4)), rng.integers(0, 4, 5)
    fd_check(nn.CrossEntropyLoss(label_smoothing=0.1), z, rng.dirichlet(np.ones(4), size=5))
    hard, soft = nn.CrossEntropyLoss(label_smoothing=0.1), nn.CrossEntropyLoss(label_smoothing=0.1)
    assert hard(z, y) == pytest.approx(soft(z, np.eye(4)[y]), rel=1e-14)   # one-hot rows: the labels
    np.testing.assert_allclose(soft.backward(), hard.backward(), rtol=1e-13, atol=1e-16)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_mse_bce_match_torch(reduction):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    x, t = rng.standard_normal((5, 3)) * 4, rng.random((5, 3))
    pw = np.array([1.0, 2.5, 0.3])
    for ours, theirs in [(nn.MSELoss(reduction), torch.nn.MSELoss(reduction=reduction)),
                         (nn.BCEWithLogitsLoss(reduction), torch.nn.BCEWithLogitsLoss(reduction=reduction)),
                         (nn.BCEWithLogitsLoss(reduction, pos_weight=pw),
                          torch.nn.BCEWithLogitsLoss(reduction=reduction, pos_weight=torch.tensor(pw)))]:
        xt = torch.tensor(x, requires_grad=True)
        lt = theirs(xt, torch.tensor(t))
        lt.backward()
        np.testing.assert_allclose(ours(x, t), lt.item(), rtol=1e-12)
        np.testing.assert_allclose(ours.backward(), xt.grad.numpy(), rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("shape, pw", [((6,), 3.0), ((6,), [3.0]), ((2, 3, 4, 4), np.array([[[0.5]], [[2.0]], [[4.0]]]))])
def test_bce_pos_weight_broadcasts_as_in_torch(shape, pw):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    x, t = rng.standard_normal(shape) * 3, (rng.random(shape) > 0.5).astype(np.float64)
    ours = nn.BCEWithLogitsLoss(pos_weight=pw)
    xt = torch.tensor(x, requires_grad=True)
    lt = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(np.asarray(pw, np.float64)))(xt, torch.tensor(t))
    lt.backward()
    np.testing.assert_allclose(ours(x, t), lt.item(), rtol=1e-12)
    np.testing.assert_allclose(ours.backward(), xt.grad.numpy(), rtol=1e-10, atol=1e-15)
    with pytest.raises(ValueError, match=r"expected pos_weight broadcastable to the logits' shape \(4, 3\) "
                                         r"\(e.g. \(3,\) for the last axis' classes, or one number\), got \(2,\)"):
        nn.BCEWithLogitsLoss(pos_weight=[1.0, 2.0])(np.zeros((4, 3)), np.zeros((4, 3)))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_bce_weight_rescales_each_element_as_in_torch(reduction):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(9)
    x, t = rng.standard_normal((5, 3)) * 3, (rng.random((5, 3)) > 0.5).astype(np.float64)
    weight, pw = np.array([0.2, 1.0, 3.0]), np.array([2.0, 1.0, 0.5])
    ours = nn.BCEWithLogitsLoss(reduction, pos_weight=pw, weight=weight)
    xt = torch.tensor(x, requires_grad=True)
    lt = torch.nn.BCEWithLogitsLoss(weight=torch.tensor(weight), pos_weight=torch.tensor(pw),
                                    reduction=reduction)(xt, torch.tensor(t))
    upstream = rng.standard_normal(lt.shape)
    lt.backward(torch.tensor(upstream))
    np.testing.assert_allclose(ours(x, t), lt.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(ours.backward(upstream if reduction == "none" else float(upstream)),
                               xt.grad.numpy(), rtol=1e-10, atol=1e-15)
    assert gradcheck_loss(ours, x, t, upstream if reduction == "none" else float(upstream))
    with pytest.raises(ValueError, match=r"expected weight broadcastable to the logits' shape \(5, 3\)"):
        nn.BCEWithLogitsLoss(weight=np.ones(5))(x, t)
    with pytest.raises(TypeError, match="expected weight to be an array of numbers, got str"):
        nn.BCEWithLogitsLoss(weight="heavy")


def test_bce_gradient_is_of_the_logits_it_was_given():
    x, y = np.array([2.0, -1.0]), np.array([1.0, 0.0])
    loss_fn = nn.BCEWithLogitsLoss()
    loss_fn(x, y)
    expected = loss_fn.backward().copy()
    x[:] = 100.0                                   # the caller reuses its array
    np.testing.assert_array_equal(loss_fn.backward(), expected)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("target_kind", ["labels", "labels_3d", "probabilities"])
def test_class_weights_match_torch(reduction, smoothing, target_kind):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(8)
    C = 4
    w = np.array([0.5, 2.0, 0.0, 1.5])
    shape = (5, 3, C) if target_kind == "labels_3d" else (6, C)
    z = rng.standard_normal(shape) * 2
    if target_kind == "probabilities":
        y = rng.dirichlet(np.ones(C), size=shape[0])
        kwargs = {}
    else:
        y = rng.integers(0, C, shape[:-1])
        y.flat[1] = 7                                     # an ignored position
        kwargs = {"ignore_index": 7}
    ours = nn.CrossEntropyLoss(reduction, label_smoothing=smoothing, weight=w, **kwargs)
    theirs = torch.nn.CrossEntropyLoss(weight=torch.tensor(w), reduction=reduction,
                                       label_smoothing=smoothing, **kwargs)
    zt = torch.tensor(z, requires_grad=True)
    lt = theirs(zt.movedim(-1, 1) if target_kind == "labels_3d" else zt, torch.tensor(y))
    upstream = rng.standard_normal(lt.shape)
    lt.backward(torch.tensor(upstream))
    loss = ours(z, y)
    np.testing.assert_allclose(loss, lt.detach().numpy(), rtol=1e-12, atol=1e-14)
    dz = ours.backward(upstream if reduction == "none" else float(upstream))
    np.testing.assert_allclose(dz, zt.grad.numpy(), rtol=1e-10, atol=1e-14)
    assert gradcheck_loss(ours, z, y, upstream if reduction == "none" else float(upstream))


def gradcheck_loss(loss_fn, z, y, upstream):
    """Finite differences of sum(loss * upstream) in z agree with backward."""
    analytic = (loss_fn(z, y), loss_fn.backward(upstream))[1]
    idx = [(0,) * z.ndim, tuple(s - 1 for s in z.shape)]
    for i in idx:
        zp, zm = z.copy(), z.copy()
        zp[i] += 1e-6
        zm[i] -= 1e-6
        numeric = (np.sum(loss_fn(zp, y) * upstream) - np.sum(loss_fn(zm, y) * upstream)) / 2e-6
        if abs(numeric - analytic[i]) > 1e-6 * max(1.0, abs(numeric)):
            return False
    return True


def test_class_weights_are_checked():
    with pytest.raises(TypeError, match=r"expected weight to be a 1-D array of numbers, one per class, got list"):
        nn.CrossEntropyLoss(weight=[[1.0, 2.0]])
    with pytest.raises(ValueError, match=r"expected finite class weights >= 0, got \[ 1. -1.\]"):
        nn.CrossEntropyLoss(weight=[1.0, -1.0])
    with pytest.raises(ValueError, match=r"expected weight of shape \(3,\), one per class of the logits, got \(2,\)"):
        nn.CrossEntropyLoss(weight=[1.0, 2.0])(np.zeros((2, 3)), np.array([0, 1]))
    loss_fn = nn.CrossEntropyLoss(weight=np.ones(3))
    z = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    assert loss_fn(z, np.array([0, 1, 2, 1])) == pytest.approx(nn.CrossEntropyLoss()(z, np.array([0, 1, 2, 1])))
    assert loss_fn.backward().dtype == np.float32


def test_bad_input():
    ce = nn.CrossEntropyLoss()
    z = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match=r"expected labels in \[0, 4\).*got 4"):
        ce(z, np.array([0, 4, 1]))
    with pytest.raises(ValueError, match=r"expected labels in \[0, 4\).*got -3"):
        ce(z, np.array([0, -3, 1]))
    with pytest.raises(TypeError, match=r"expected integer class labels for a target of shape \(3,\) \(or class "
                                        r"probabilities of the logits' shape \(3, 4\)\), got float32 labels"):
        ce(z, np.array([0.0, 1.0, 1.0], np.float32))
    with pytest.raises(ValueError, match=r"expected class probabilities of the logits' shape \(3, 4\), got \(3, 2\)"):
        ce(z, np.zeros((3, 2), np.float32))
    with pytest.raises(ValueError, match=r"ignore_index=3 applies to integer labels; class probabilities have"):
        nn.CrossEntropyLoss(ignore_index=3)(z, np.full((3, 4), 0.25, np.float32))
    ce(z, np.array([0, 1, 1]))
    with pytest.raises(TypeError, match=r"CrossEntropyLoss.backward: expected dloss to be a number or an array of numbers, got <U1"):
        ce.backward("x")
    with pytest.raises(TypeError, match=r"expected class probabilities of the logits' dtype float32, got float64"):
        ce(z, np.zeros((3, 4)))
    with pytest.raises(TypeError, match="integer class labels or float class probabilities, got dtype bool"):
        ce(z, np.array([True, False, True]))
    with pytest.raises(ValueError, match=r"expected target of shape \(3,\)"):
        ce(z, np.array([0, 1]))
    with pytest.raises(ValueError, match=r"expected target of shape \(2, 4\) for logits \(2, 4, 5\), got "
                                         r"\(2, 5\); the class axis is the last here, PyTorch's is axis 1: "
                                         r"pass logits.transpose\(0, 2, 1\)$"):
        ce(np.zeros((2, 4, 5), np.float32), np.zeros((2, 5), np.int64))     # PyTorch's (N, C, T)
    with pytest.raises(TypeError, match="expected logits of dtype float32 or float64, got int64"):
        ce(np.zeros((3, 4), np.int64), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"expected logits of shape \(N, C\) or \(N, T, C\) with C >= 1 classes, got \(3, 0\)"):
        ce(np.zeros((3, 0), np.float32), np.array([0, 1, 2]))
    with pytest.raises(TypeError, match="CrossEntropyLoss: expected ignore_index to be an int, got 2.5"):
        nn.CrossEntropyLoss(ignore_index=2.5)
    with pytest.raises(TypeError, match="CrossEntropyLoss: expected label_smoothing to be a number, got '0.1'"):
        nn.CrossEntropyLoss(label_smoothing="0.1")
    with pytest.raises(ValueError, match=r"expected label_smoothing in \[0.0, 1.0\], got 1.5"):
        nn.CrossEntropyLoss(label_smoothing=1.5)
    for loss in (nn.MSELoss(), nn.BCEWithLogitsLoss()):
        with pytest.raises(TypeError, match=f"{type(loss).__name__}: expected a numeric target, got dtype <U1"):
            loss(np.zeros(2, np.float32), np.array(["1", "2"]))
    with pytest.raises(TypeError, match="BCEWithLogitsLoss: expected pos_weight to be an array of numbers, got str 'abc'"):
        nn.BCEWithLogitsLoss(pos_weight="abc")
    with pytest.raises(ValueError, match=r"BCEWithLogitsLoss: expected pos_weight of finite numbers >= 0, got \[ 1. -2.\]"):
        nn.BCEWithLogitsLoss(pos_weight=[1.0, -2.0])
    with pytest.raises(ValueError, match=r"BCEWithLogitsLoss: expected weight of finite numbers >= 0, got nan"):
        nn.BCEWithLogitsLoss(weight=np.nan)
    with pytest.raises(ValueError, match="expected reduction"):
        nn.MSELoss(reduction="avg")
    with pytest.raises(ValueError, match=r"MSELoss: expected target of shape \(3, 4\)"):
        nn.MSELoss()(z, np.zeros((3, 1)))
    with pytest.raises(ValueError, match="before the loss was computed"):
        nn.MSELoss().backward()


def test_mse_gradient_scales_before_it_doubles():
    """``2 (pred - target) / n`` in float32: 2 * 2e38 overflows, 2 / n * 2e38 does not."""
    loss = nn.MSELoss()
    with np.errstate(over="ignore"):                 # the loss itself is inf, as in PyTorch
        loss(np.full(5, 1e38, np.float32), np.full(5, -1e38, np.float32))
    np.testing.assert_allclose(loss.backward(), np.full(5, 8e37, np.float32), rtol=1e-6)
